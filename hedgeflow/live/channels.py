"""Notification channels: webhook URLs (one JSON POST per event) and Apprise URLs.

A channel URL is a secret (it carries a token in its path, query or user part), so:

* :func:`check_urls` validates the URLs of ``[notify]`` when the settings load and
  registers them (and their token-like parts) with :mod:`hedgeflow.secrets`; its errors
  name the entry (``notify.webhooks[0]``), never the URL;
* a channel is known by :func:`channel_id` (``webhook-<hash>``), a short hash of its
  URL, in the warehouse and in logs;
* a failed :meth:`Channel.send` raises :class:`DeliveryError` whose message is built
  here from the failure's kind (``HTTP 500``, ``timed out after 5.0 s``, ``connection
  refused``), never from the HTTP library's message (which quotes the URL).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

from hedgeflow.errors import ConfigError, HedgeflowError
from hedgeflow.secrets import redact, register_secret

__all__ = [
    "APPRISE_LOGGER",
    "AppriseChannel",
    "Channel",
    "DeliveryError",
    "WebhookChannel",
    "channel_id",
    "check_urls",
    "make_channels",
]

APPRISE_LOGGER = "apprise"  # it logs the URLs it loads: muted (see _quiet_apprise)
MIN_SECRET_PART = 6  # URL parts at least this long are registered for redaction too


class DeliveryError(HedgeflowError):
    """One delivery attempt failed; the message never contains the URL."""


class Channel(Protocol):
    id: str
    label: str

    def send(self, event: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def channel_id(kind: str, url: str) -> str:
    """A stable name for a channel that does not reveal its URL."""
    return f"{kind}-{hashlib.sha256(url.encode()).hexdigest()[:12]}"


def _secret_parts(url: str, *, host_is_secret: bool) -> list[str]:
    """The URL and its token-like parts (user, password, path segments, query values)."""
    parts = [url]
    try:
        split = urlsplit(url)
    except ValueError:
        return parts
    if split.username:
        parts.append(split.username)
    if split.password:
        parts.append(split.password)
    if host_is_secret and split.hostname:
        parts.append(split.hostname)
    parts.extend(seg for seg in split.path.split("/") if seg)
    parts.extend(v for _, v in parse_qsl(split.query, keep_blank_values=False))
    if split.fragment:
        parts.append(split.fragment)
    return [p for p in parts if len(p) >= MIN_SECRET_PART or p == url]


def _quiet_apprise() -> None:
    logger = logging.getLogger(APPRISE_LOGGER)
    logger.setLevel(logging.CRITICAL + 1)
    logger.propagate = False


def _apprise_knows(url: str) -> bool:
    _quiet_apprise()
    import apprise

    return apprise.Apprise.instantiate(url, suppress_exceptions=True) is not None


def check_urls(name: str, urls: Any, kind: Literal["http", "apprise"]) -> tuple[str, ...]:
    """The URLs of ``[notify] name`` as a tuple, each registered as a secret; a
    ConfigError naming the entry (``notify.webhooks[1]``) and the problem, never the
    URL, for a value that is not a list of URLs of the right kind."""
    if urls is None:
        return ()
    if isinstance(urls, str) or not isinstance(urls, Sequence):
        if isinstance(urls, str):
            register_secret(urls)
        raise ConfigError(f"notify.{name}", 'expected a list of URLs, e.g. ["https://..."]')
    out: list[str] = []
    for i, url in enumerate(urls):
        key = f"notify.{name}[{i}]"
        if not isinstance(url, str):
            raise ConfigError(key, f"expected a URL string, got a {type(url).__name__}")
        url = url.strip()
        for part in _secret_parts(url, host_is_secret=kind == "apprise"):
            register_secret(part)
        if kind == "http":
            try:
                split = urlsplit(url)
                port = split.port  # raises ValueError on a bad port
            except ValueError:
                raise ConfigError(key, "not a valid URL") from None
            if split.scheme.lower() not in ("http", "https"):
                raise ConfigError(key, "not an http(s) URL")
            if not split.hostname:
                raise ConfigError(key, "an http(s) URL needs a host")
            del port
        else:
            scheme = url.split("://", 1)[0] if "://" in url else ""
            if not scheme:
                raise ConfigError(key, "not an Apprise URL (expected scheme://...)")
            if not _apprise_knows(url):
                raise ConfigError(
                    key,
                    f"Apprise does not know the scheme {scheme!r} or cannot parse the URL "
                    "(see https://github.com/caronc/apprise/wiki)"
                    if len(scheme) <= 20 and scheme.isalnum()
                    else "Apprise does not know this URL's scheme",
                )
        if url in out:
            raise ConfigError(key, "the same URL is listed twice")
        out.append(url)
    return tuple(out)


class WebhookChannel:
    """POSTs one JSON object per event; any 2xx is an acknowledgement."""

    def __init__(self, url: str, index: int, timeout: float) -> None:
        import requests

        self._url = url
        self._timeout = float(timeout)
        self._session = requests.Session()
        self.id = channel_id("webhook", url)
        self.label = f"webhooks[{index}]"

    def __repr__(self) -> str:
        return f"WebhookChannel({self.label}, {self.id})"

    def send(self, event: Mapping[str, Any]) -> None:
        import requests

        body = json.dumps(dict(event), sort_keys=True, default=str).encode()
        try:
            resp = self._session.post(
                self._url,
                data=body,
                headers={"Content-Type": "application/json", "Idempotency-Key": event["event_id"]},
                timeout=self._timeout,
                allow_redirects=False,
            )
        except requests.Timeout:
            raise DeliveryError(f"timed out after {self._timeout:g} s") from None
        except requests.ConnectionError as exc:
            raise DeliveryError(_connection_problem(exc)) from None
        except requests.RequestException as exc:
            raise DeliveryError(f"request failed ({type(exc).__name__})") from None
        try:
            if not 200 <= resp.status_code < 300:
                reason = redact(str(resp.reason or ""), self._url)[:60]
                raise DeliveryError(f"HTTP {resp.status_code}{' ' + reason if reason else ''}")
        finally:
            resp.close()

    def close(self) -> None:
        self._session.close()


def _connection_problem(exc: BaseException) -> str:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ConnectionRefusedError):
            return "connection refused"
        if isinstance(seen, TimeoutError):
            return "timed out connecting"
        if isinstance(seen, OSError) and seen.errno is not None:
            import os

            return f"connection failed ({os.strerror(seen.errno)})"
        nxt = seen.__cause__ or seen.__context__
        if nxt is None and seen.args and isinstance(seen.args[0], BaseException):
            nxt = seen.args[0]
        seen = nxt
    text = str(exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host not found"
    if "timed out" in text:
        return "timed out connecting"
    return f"connection failed ({type(exc).__name__})"


class AppriseChannel:
    """Sends each event as a short message through one Apprise URL."""

    def __init__(self, url: str, index: int, timeout: float) -> None:
        _quiet_apprise()
        import apprise

        self._app = apprise.Apprise()
        if not self._app.add(url):
            raise DeliveryError(f"apprise[{index}]: Apprise cannot use this URL")
        self.id = channel_id("apprise", url)
        self.label = f"apprise[{index}]"
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"AppriseChannel({self.label}, {self.id})"

    def send(self, event: Mapping[str, Any]) -> None:
        title, body = message_text(event)
        try:
            ok = self._app.notify(title=title, body=body)
        except Exception as exc:
            raise DeliveryError(f"Apprise failed ({type(exc).__name__})") from None
        if not ok:
            raise DeliveryError(
                "Apprise could not deliver (the service refused or was unreachable)"
            )

    def close(self) -> None:
        pass


def message_text(event: Mapping[str, Any]) -> tuple[str, str]:
    """(title, body) of an event for chat and mail."""
    kind = event.get("kind")
    if kind == "run":
        title = f"hedgeflow {event.get('flow')} run {event.get('status')}"
        body = f"run {event.get('run_id')}: {event.get('reason') or event.get('status')}"
        return title, body
    if kind not in ("order", "fill"):
        title = f"hedgeflow {kind} {event.get('run_id')}"
        body = ", ".join(f"{k} {v}" for k, v in event.items() if k not in ("kind",))
        return title, body[:2000]
    side = str(event.get("side", "")).upper()
    what = "fill" if kind == "fill" else "order"
    title = f"hedgeflow {event.get('agent')}: {side} {event.get('symbol')} ({what})"
    price = event.get("price")
    qty = event.get("qty")
    parts = [f"{side} {event.get('symbol')}"]
    if qty is not None:
        parts.append(f"qty {qty:g}" if isinstance(qty, float) else f"qty {qty}")
    if price is not None:
        parts.append(f"at {price:g}" if isinstance(price, float) else f"at {price}")
    parts.append(f"({event.get('reason')}) {event.get('ts')} [{event.get('event_id')}]")
    return title, " ".join(parts)


def make_channels(
    webhooks: Sequence[str], apprise_urls: Sequence[str], timeout: float
) -> list[Channel]:
    channels: list[Channel] = [WebhookChannel(u, i, timeout) for i, u in enumerate(webhooks)]
    channels += [AppriseChannel(u, i, timeout) for i, u in enumerate(apprise_urls)]
    return channels

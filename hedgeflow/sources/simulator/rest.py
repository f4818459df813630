"""The simulator's REST side: EODHD's ``GET /api/intraday/{TICKER}`` and
``GET /api/splits/{TICKER}``, plus a control
endpoint (``POST /_control/faults``, ``GET /_control/requests``)."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import pandas as pd

from hedgeflow.errors import HedgeflowError, InvalidInputError
from hedgeflow.market import MAX_REQUEST_DAYS, normalize_symbol
from hedgeflow.secrets import redact
from hedgeflow.sources.eodhd_format import render_intraday_json
from hedgeflow.sources.faults import Fault
from hedgeflow.splits import render_splits_json

if TYPE_CHECKING:
    from hedgeflow.sources.simulator.server import Simulator

log = logging.getLogger("hedgeflow.sources.simulator")

DEFAULT_DAYS = 120  # EODHD's range without from/to
_TOKEN_IN_TEXT = re.compile(r"(api_token=)[^&\s]*")
_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body>"
    b"</html>\n"
)


@dataclass
class RequestRecord:
    """One request to /api (the token is never recorded), logged on arrival; ``status``
    is set just before the answer is written (None: no answer, e.g. timeout or drop)."""

    method: str
    path: str
    ticker: str | None
    params: dict[str, str]
    fault: str | None
    at: float
    status: int | None = None


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a handler sleeping in a 'timeout' fault must not block stop()
    simulator: Simulator

    def server_activate(self) -> None:
        super().server_activate()
        self.open_sockets: set[socket.socket] = set()
        self.sockets_lock = threading.Lock()

    def close_open_connections(self) -> None:
        """Close keep-alive connections too, so a stopped simulator answers nothing."""
        with self.sockets_lock:
            sockets, self.open_sockets = self.open_sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class RestHandler(BaseHTTPRequestHandler):
    server: SimulatorHTTPServer
    protocol_version = "HTTP/1.1"
    server_version = "hedgeflow-eodhd-simulator"
    _record: RequestRecord | None = None

    # -- plumbing ---------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        with self.server.sockets_lock:
            self.server.open_sockets.add(self.connection)

    def finish(self) -> None:
        with self.server.sockets_lock:
            self.server.open_sockets.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("simulator %s %s", self.address_string(), _scrub(format % args))

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if self._record is not None:
            self._record.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers=headers)

    def _no_answer(self) -> None:
        self.close_connection = True

    # -- routes -----------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        if path == "/_control/requests":
            self._json(200, {"count": len(self.server.simulator.request_log)})
            return
        if path.startswith("/api/intraday/"):
            self._intraday(path.removeprefix("/api/intraday/"), query)
            return
        if path.startswith("/api/splits/"):
            self._splits(path.removeprefix("/api/splits/"), query)
            return
        self._json(404, {"error": "Not found"})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        if path != "/_control/faults":
            self._json(404, {"error": "Not found"})
            return
        try:
            self._control(json.loads(raw or b"{}"))
        except (ValueError, TypeError, HedgeflowError) as exc:
            self._json(400, {"error": str(exc)})
            return
        self._json(200, {"pending": self.server.simulator.faults.pending})

    def _control(self, command: Any) -> None:
        """``{"inject": "429", "count": 2, "retry_after": 1}``,
        ``{"random": {"rate": 0.2, "kinds": ["500"], "seed": 1}}`` or ``{"clear": true}``."""
        if not isinstance(command, dict):
            raise InvalidInputError("expected a JSON object")
        faults = self.server.simulator.faults
        if command.get("clear"):
            faults.clear()
        if "inject" in command:
            faults.inject(
                str(command["inject"]),
                int(command.get("count", 1)),
                float(command.get("retry_after", 1.0)),
                command.get("status"),
            )
        if "random" in command:
            spec = command["random"]
            if not isinstance(spec, dict):
                raise InvalidInputError("'random' expects an object")
            kwargs = {k: spec[k] for k in ("kinds", "seed") if k in spec}
            faults.random(float(spec.get("rate", 0.0)), **kwargs)

    # -- intraday ---------------------------------------------------------------------

    def _intraday(self, ticker: str, query: dict[str, str]) -> None:
        self._answer("/api/intraday/", ticker, query, self._serve)

    def _answer(
        self,
        route: str,
        ticker: str,
        query: dict[str, str],
        serve: Callable[[str, dict[str, str]], object],
    ) -> None:
        """One /api request: recorded on arrival (without the token), then the next
        queued fault if there is one, else ``serve(ticker, query)``."""
        sim = self.server.simulator
        fault = sim.faults.next()
        params = {k: v for k, v in query.items() if k != "api_token"}
        record = RequestRecord(
            "GET", route + ticker, ticker, params, fault.kind if fault else None, time.time()
        )
        self._record = record
        sim.record(record)
        try:
            if fault is not None:
                self._apply_fault(fault, ticker, query)
            else:
                serve(ticker, query)
        finally:
            self._record = None

    def _known_symbol(self, ticker: str, query: dict[str, str]) -> str | None:
        """The ticker's symbol, or None after answering 401 (token) or 404 (ticker)."""
        sim = self.server.simulator
        token = query.get("api_token", "")
        if not token or not any(hmac.compare_digest(token, t) for t in sim.tokens):
            self._json(401, {"message": "Unauthenticated", "error": "Invalid API token"})
            return None
        try:
            symbol = normalize_symbol(ticker)
        except InvalidInputError:
            symbol = ""
        if not symbol or (sim.symbols is not None and symbol not in sim.symbols):
            self._json(404, {"error": "Ticker Not Found."})
            return None
        return symbol

    def _serve(self, ticker: str, query: dict[str, str]) -> int | None:
        sim = self.server.simulator
        symbol = self._known_symbol(ticker, query)
        if symbol is None:
            return None
        interval = query.get("interval", "5m")
        if interval not in sim.max_request_days:
            message = f"The selected interval is invalid: {interval}"
            self._json(422, {"errors": {"interval": [message]}})
            return 422
        try:
            lo, hi = _range(query, interval, sim.max_request_days[interval])
            bars = sim.market.fetch_bars(
                symbol, interval, _utc(lo), _utc(hi + 1)
            )  # from/to are inclusive
        except (InvalidInputError, ValueError, OverflowError) as exc:
            self._json(422, {"errors": {"from": [redact(str(exc))]}})
            return 422
        self._send(200, render_intraday_json(bars))
        return 200

    # -- splits -----------------------------------------------------------------------

    def _splits(self, ticker: str, query: dict[str, str]) -> None:
        """``GET /api/splits/{TICKER}?from=YYYY-MM-DD&to=YYYY-MM-DD``: the market's
        splits in that range, oldest first (faults apply as to intraday requests;
        ``sim.split_answers[symbol]`` replaces the answer, for malformed vendor data)."""
        self._answer("/api/splits/", ticker, query, self._serve_splits)

    def _serve_splits(self, ticker: str, query: dict[str, str]) -> None:
        sim = self.server.simulator
        symbol = self._known_symbol(ticker, query)
        if symbol is None:
            return
        if symbol in sim.split_answers:
            self._send(200, sim.split_answers[symbol])
            return
        try:
            lo = date.fromisoformat(query.get("from") or "1970-01-01")
            hi = date.fromisoformat(query.get("to") or datetime.now(UTC).date().isoformat())
        except ValueError as exc:
            self._json(422, {"errors": {"from": [str(exc)]}})
            return
        self._send(200, render_splits_json(sim.market.fetch_splits(symbol, lo, hi)))

    def _apply_fault(self, fault: Fault, ticker: str, query: dict[str, str]) -> int | None:
        kind = fault.kind
        if kind == "429":
            retry = fault.retry_after
            value = str(int(retry)) if float(retry).is_integer() else str(retry)
            self._json(429, {"message": "Too Many Requests"}, headers={"Retry-After": value})
            return 429
        if kind in ("500", "503"):
            status = fault.status or int(kind)
            self._json(status, {"message": "Server Error"})
            return status
        if kind in ("401", "403", "404"):
            messages = {"401": "Unauthenticated", "403": "Forbidden", "404": "Ticker Not Found."}
            self._json(int(kind), {"error": messages[kind]})
            return int(kind)
        if kind in ("html", "html502"):
            status = fault.status or (502 if kind == "html502" else 200)
            self._send(status, _HTML_PAGE, content_type="text/html")
            return status
        if kind == "empty":
            self._send(200, b"[]")
            return 200
        if kind == "truncated":
            # A valid answer (or a synthetic one if the request is bad), cut mid-way.
            body = self._body_for(ticker, query)
            cut = max(1, len(body) // 2)
            self._send(200, body[:cut])
            return 200
        if kind == "timeout":
            self.server.simulator.stopping.wait(self.server.simulator.timeout_sleep)
        self._no_answer()  # timeout (after sleeping) and drop
        return None

    def _body_for(self, ticker: str, query: dict[str, str]) -> bytes:
        sim = self.server.simulator
        try:
            interval = query.get("interval", "5m")
            lo, hi = _range(query, interval, sim.max_request_days[interval])
            bars = sim.market.fetch_bars(ticker, interval, _utc(lo), _utc(hi + 1))
            body = render_intraday_json(bars)
        except (HedgeflowError, KeyError, ValueError, OverflowError):
            body = b""
        if len(body) < 40:
            body = (
                b'[{"timestamp":1627896900,"gmtoffset":0,"datetime":"2021-08-02 09:35:00",'
                b'"open":146.1,"high":146.3,"low":145.9,"close":146.2,"volume":123456}]'
            )
        return body


def _utc(seconds: int) -> pd.Timestamp:
    return pd.Timestamp(seconds, unit="s", tz="UTC")


def _range(query: dict[str, str], interval: str, max_days: int) -> tuple[int, int]:
    """Inclusive [from, to] Unix seconds; EODHD's default is the last 120 days."""
    now = int(datetime.now(UTC).timestamp())
    to = _int_param(query, "to")
    frm = _int_param(query, "from")
    if to is None:
        to = now
    if frm is None:
        frm = to - DEFAULT_DAYS * 86_400
    if to < frm:
        raise InvalidInputError("'to' is before 'from'")
    if to - frm > max_days * 86_400:
        raise InvalidInputError(
            f"The maximum period between 'from' and 'to' for the {interval} interval "
            f"is {max_days} days"
        )
    return frm, to


def _int_param(query: dict[str, str], name: str) -> int | None:
    text = query.get(name)
    if text is None or text == "":
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidInputError(f"'{name}' must be Unix seconds") from None


def _scrub(text: str) -> str:
    return redact(_TOKEN_IN_TEXT.sub(r"\1***", text))


__all__ = ["MAX_REQUEST_DAYS", "RequestRecord", "RestHandler", "SimulatorHTTPServer"]

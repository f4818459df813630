"""Keeping secrets (the EODHD API token) out of logs, exceptions and reprs.

* ``redact(text, *secrets)`` scrubs the given and all registered secrets, plus any
  ``api_token=...`` query parameter, from a string.
* ``register_secret(value)`` adds a value to the process-wide registry that
  ``RedactingFilter`` scrubs from every log record it sees.
* ``install_redaction()`` attaches the filter to the root logger's handlers and to
  the loggers of the HTTP libraries (urllib3 logs full request URLs at DEBUG,
  query string included), so even records that reach a handler added later
  (pytest's caplog, a Prefect handler) are already clean.
* ``load_eodhd_token(env)`` reads ``EODHD_API_TOKEN`` and registers it.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from urllib.parse import quote, quote_plus

from hedgeflow.errors import ConfigError

TOKEN_ENV = "EODHD_API_TOKEN"
MASK = "***"
# Loggers that may format request URLs (with the query string) into their messages.
HTTP_LOGGERS: tuple[str, ...] = (
    "urllib3",
    "urllib3.connectionpool",
    "urllib3.connection",
    "urllib3.util.retry",
    "requests",
    "websockets",
    "websockets.client",
    "hedgeflow",
)

_QUERY_TOKEN_RE = re.compile(r"(api_token=)[^&\s'\"<>]+", re.IGNORECASE)
_registry: set[str] = set()
_lock = threading.Lock()


def register_secret(value: str | None) -> None:
    """Remember a secret so every RedactingFilter (and ``redact``) scrubs it."""
    if value:
        with _lock:
            _registry.add(value)


def registered_secrets() -> frozenset[str]:
    with _lock:
        return frozenset(_registry)


def redact(text: str, *secrets: str | None) -> str:
    """``text`` with the given and all registered secrets (also URL-encoded) and any
    ``api_token=`` query value replaced by ``***``."""
    if not isinstance(text, str):
        text = str(text)
    values = {s for s in secrets if s} | registered_secrets()
    variants = set()
    for value in values:
        variants.update({value, quote(value, safe=""), quote_plus(value)})
    # Longest first, so a secret containing another is removed whole.
    for variant in sorted(variants, key=len, reverse=True):
        if variant and variant in text:
            text = text.replace(variant, MASK)
    return _QUERY_TOKEN_RE.sub(r"\g<1>" + MASK, text)


class RedactingFilter(logging.Filter):
    """Scrubs registered secrets from a record's message, arguments and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep the raw parts, redacted
            message = f"{record.msg} {record.args}"
        clean = redact(message)
        if clean != message:
            record.msg = clean
            record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = redact(text)
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactingFilter()


def install_redaction(logger_names: tuple[str, ...] = HTTP_LOGGERS) -> RedactingFilter:
    """Attach the (single, shared) filter to the root handlers and the named loggers.

    Idempotent: a logger or handler never gets the filter twice.
    """
    targets: list[logging.Filterer] = list(logging.getLogger().handlers)
    targets += [logging.getLogger(name) for name in logger_names]
    for target in targets:
        if _FILTER not in target.filters:
            target.addFilter(_FILTER)
    return _FILTER


def load_eodhd_token(env: Mapping[str, str] | None = None) -> str:
    """The EODHD token from ``EODHD_API_TOKEN``; registered for redaction.

    Raises ConfigError naming the variable (never the value) when it is unset or blank.
    """
    env = os.environ if env is None else env
    token = (env.get(TOKEN_ENV) or "").strip()
    if not token:
        raise ConfigError(
            TOKEN_ENV,
            f"is not set: the eodhd source needs an API token; export {TOKEN_ENV}=... "
            "(or use the synthetic or simulator source, which need none)",
        )
    register_secret(token)
    return token

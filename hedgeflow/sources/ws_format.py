"""EODHD WebSocket wire formats: render ticks as frames, parse frames into ticks.

One JSON object per frame; ``t`` is epoch **milliseconds** (EODHD.md):

====== =====================================================================================
feed   frame
====== =====================================================================================
us       ``{"s": "AAPL", "p": 227.31, "v": 100, "c": [12, 37], "dp": false, "ms": "market",
         "t": 1725198451165}``
us-quote ``{"s": "AAPL", "ap": 227.32, "as": 3, "bp": 227.30, "bs": 5, "t": 1725198451165}``
forex    ``{"s": "EURUSD", "a": 1.10523, "b": 1.10519, "dc": "0.0281", "dd": "0.0003",
         "ppms": false, "t": 1725198451000}``
crypto   ``{"s": "BTC-USD", "p": "63012.5", "q": "0.0041", "dc": "1.23", "dd": "765.1",
         "t": 1725198451165}``
====== =====================================================================================

:func:`parse_frame` never raises on what the server sends and never produces a wrong
price. It returns a :class:`~hedgeflow.sources.tick.Tick`, a :class:`StatusFrame`
(``{"status_code": 200, "message": "Authorized"}``, error messages) or a
:class:`BadFrame` naming the reason (one of :data:`BAD_REASONS`). Numbers may be JSON
numbers or strings; quotes (forex, us-quote) become ticks priced at the bid/ask mid with
the bid and ask kept. A ``t`` that is not a plausible millisecond timestamp (seconds or
microseconds by mistake, fractions, out of 2000-2100) is rejected, never rescaled.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import normalize_symbol, ws_code
from hedgeflow.sources.tick import Tick

FEEDS: tuple[str, ...] = ("us", "us-quote", "forex", "crypto")
# Exchange suffix of the canonical symbols each feed carries.
FEED_EXCHANGE: dict[str, str] = {"us": "US", "us-quote": "US", "forex": "FOREX", "crypto": "CC"}

# Plausible tick times: 2000-01-01 <= t < 2100-01-01, in milliseconds.
MIN_TS_MS = 946_684_800_000
MAX_TS_MS = 4_102_444_800_000

_NAN = math.nan
_INF = math.inf
_DETAIL_CHARS = 160

BAD_REASONS: tuple[str, ...] = (
    "not_json",  # not UTF-8 JSON at all (truncated, garbage, HTML)
    "not_object",  # JSON, but not an object (array, string, number, null)
    "missing_symbol",  # no "s" and not a status frame
    "invalid_symbol",  # "s" is not a string
    "unknown_symbol",  # "s" is not one of the subscribed symbols
    "missing_price",  # no price field (p; a and b; ap and bp)
    "invalid_price",  # price is not a number (e.g. "abc", null, true, a list)
    "non_finite_price",  # NaN or +-inf
    "non_positive_price",  # <= 0
    "crossed_quote",  # bid > ask
    "invalid_size",  # size present but not a non-negative finite number
    "missing_time",  # no "t"
    "invalid_time",  # "t" not an integer number of milliseconds
    "time_in_seconds",  # "t" looks like epoch seconds: rejected, not rescaled
    "implausible_time",  # "t" outside 2000..2100 in ms (microseconds, garbage)
    "oversized",  # over the client's max frame size: refused unread, the connection closes
)


@dataclass(frozen=True, slots=True)
class StatusFrame:
    """A status or error message from the server (not a tick)."""

    code: int | None
    message: str
    is_error: bool

    @property
    def is_auth_failure(self) -> bool:
        text = self.message.lower()
        return self.code in (401, 403) or "unauthori" in text or "invalid api" in text


@dataclass(frozen=True, slots=True)
class BadFrame:
    """A frame that could not be turned into a tick; ``reason`` is one of BAD_REASONS."""

    reason: str
    detail: str = ""


ParseResult = Tick | StatusFrame | BadFrame


# -- symbols ------------------------------------------------------------------------------


def check_feed(feed: str) -> str:
    if feed not in FEED_EXCHANGE:
        raise InvalidInputError(f"unknown WebSocket feed {feed!r}: expected one of {FEEDS}")
    return feed


def canonical_symbol(feed: str, code: str) -> str:
    """``AAPL`` on ``us`` -> ``AAPL.US``; raises InvalidInputError for a bad code."""
    return normalize_symbol(f"{code}.{FEED_EXCHANGE[check_feed(feed)]}")


def symbol_map(symbols: Iterable[str]) -> dict[str, str]:
    """``{ws_code: canonical}`` for canonical symbols (``AAPL.US`` -> ``{"AAPL": "AAPL.US"}``)."""
    out: dict[str, str] = {}
    for symbol in symbols:
        canonical = normalize_symbol(symbol)
        code = ws_code(canonical)
        if out.get(code, canonical) != canonical:
            raise InvalidInputError(
                f"symbols {out[code]} and {canonical} share the WebSocket code {code!r}"
            )
        out[code] = canonical
    return out


# -- rendering ----------------------------------------------------------------------------


def _size_value(size: float) -> int | float:
    return int(size) if size.is_integer() and abs(size) < 2**53 else size


def render_tick(
    feed: str,
    tick: Tick,
    *,
    day_change_pct: float = 0.0,
    day_change: float = 0.0,
    ask_size: int = 100,
    bid_size: int = 100,
) -> str:
    """The exact EODHD frame of ``tick`` on ``feed`` (``t`` in milliseconds).

    Quotes need finite ``tick.bid``/``tick.ask``; a trade price must be finite and positive.
    Optional day change (``dc`` percent, ``dd`` absolute) and quote sizes fill the fields
    a tick does not carry.
    """
    code = ws_code(tick.symbol)
    t = int(tick.ts_ms)
    if feed == "us":
        frame: dict[str, Any] = {"s": code, "p": _finite(tick.price, "price")}
        if tick.size == tick.size:
            frame["v"] = _size_value(tick.size)
        frame.update({"c": [], "dp": False, "ms": tick.ms or "market", "t": t})
    elif feed == "us-quote":
        frame = {
            "s": code,
            "ap": _finite(tick.ask, "ask"),
            "as": ask_size,
            "bp": _finite(tick.bid, "bid"),
            "bs": bid_size,
            "t": t,
        }
    elif feed == "forex":
        frame = {
            "s": code,
            "a": _finite(tick.ask, "ask"),
            "b": _finite(tick.bid, "bid"),
            "dc": f"{day_change_pct:.4f}",
            "dd": repr(round(day_change, 8)),
            "ppms": False,
            "t": t,
        }
    elif feed == "crypto":
        frame = {"s": code, "p": repr(_finite(tick.price, "price"))}
        if tick.size == tick.size:
            frame["q"] = repr(float(tick.size))
        frame.update({"dc": f"{day_change_pct:.2f}", "dd": repr(round(day_change, 8)), "t": t})
    else:
        check_feed(feed)
        raise AssertionError("unreachable")
    return json.dumps(frame)


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInputError(f"cannot render a tick with a non-finite {what} ({value})")
    return value


# -- parsing ------------------------------------------------------------------------------


def _bad(reason: str, raw: Any) -> BadFrame:
    text = raw if isinstance(raw, str) else repr(raw)
    if len(text) > _DETAIL_CHARS:
        text = text[:_DETAIL_CHARS] + "..."
    return BadFrame(reason, text)


def _loads(raw: Any) -> Any:
    """The frame decoded with orjson (a crypto trade frame parses in ~0.6x the time it
    took with json.loads);
    what orjson refuses goes to ``json.loads``, so that the results are the standard
    library's: it also takes NaN/Infinity (a non-finite price, not garbage), numbers
    beyond a double (1e400 is inf), integers over 64 bits, lone surrogates and UTF-16/32
    bytes, and raises ValueError, TypeError or RecursionError on the rest. One
    difference: valid JSON nested deeper than Python's recursion limit is decoded
    (json.loads raised RecursionError)."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def _number(value: Any) -> float | None:
    """A JSON number or numeric string as float; None when it is neither (bool is not)."""
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _price_problem(value: Any) -> tuple[float, str]:
    """(price, "") for a finite positive price, else (nan, reason)."""
    if value is None:
        return _NAN, "invalid_price"
    number = _number(value)
    if number is None:
        return _NAN, "invalid_price"
    if number != number or number in (_INF, -_INF):
        return _NAN, "non_finite_price"
    if number <= 0.0:
        return _NAN, "non_positive_price"
    return number, ""


def _time_ms(value: Any) -> tuple[int, str]:
    """(ms, "") for a plausible millisecond timestamp, else (0, reason)."""
    kind = type(value)
    if kind is int:
        ms: int = value
    elif kind is float:
        if not value.is_integer():
            return 0, "invalid_time"
        ms = int(value)
    elif kind is str:
        try:
            ms = int(value)
        except ValueError:
            return 0, "invalid_time"
    else:
        return 0, "invalid_time"
    if MIN_TS_MS <= ms < MAX_TS_MS:
        return ms, ""
    if MIN_TS_MS // 1000 <= ms < MAX_TS_MS // 1000:
        return 0, "time_in_seconds"
    return 0, "implausible_time"


def _size(msg: dict[str, Any], field: str) -> float | None:
    """The size field: NaN when missing/null, None when invalid."""
    value = msg.get(field)
    if value is None:
        return _NAN
    kind = type(value)
    if kind is int or kind is float:
        size = float(value)
    else:
        size = _number(value)  # type: ignore[assignment]
        if size is None:
            return None
    if size != size:
        return _NAN
    if size < 0.0 or size == _INF:
        return None
    return size


def _status(msg: dict[str, Any]) -> StatusFrame:
    code_value = msg.get("status_code", msg.get("status"))
    code: int | None
    try:
        code = None if code_value is None or type(code_value) is bool else int(code_value)
    except (TypeError, ValueError):
        code = None
    error = msg.get("error")
    message = msg.get("message")
    text = str(message if message is not None else error if error is not None else "")
    is_error = error is not None or (code is not None and code != 200)
    return StatusFrame(code, text[:500], is_error)


def _slow_symbol(
    msg: dict[str, Any], symbols: Mapping[str, str], raw: Any
) -> str | StatusFrame | BadFrame:
    """The symbol when the fast lookup missed; else a StatusFrame or a BadFrame."""
    if "s" not in msg:
        if "status_code" in msg or "message" in msg or "error" in msg or "status" in msg:
            return _status(msg)
        return _bad("missing_symbol", raw)
    code = msg["s"]
    if type(code) is not str:
        return _bad("invalid_symbol", raw)
    return symbols.get(code.strip().upper()) or _bad("unknown_symbol", raw)


def _parse_trade(
    raw: str | bytes | bytearray, symbols: Mapping[str, str], feed: str, size_field: str
) -> ParseResult:
    try:
        msg = _loads(raw)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        return _bad("not_json", raw)
    if type(msg) is not dict:
        return _bad("not_object", raw)
    code = msg.get("s")
    symbol = symbols.get(code) if type(code) is str else None
    if symbol is None:
        found = _slow_symbol(msg, symbols, raw)
        if type(found) is not str:
            return found  # type: ignore[return-value]
        symbol = found
    # Fast path: a float/int price and an int time.
    p = msg.get("p")
    if type(p) is float and 0.0 < p < _INF:
        price: float = p
    else:
        if p is None:
            return _bad("missing_price" if "p" not in msg else "invalid_price", raw)
        price, problem = _price_problem(p)
        if problem:
            return _bad(problem, raw)
    t = msg.get("t")
    if type(t) is int and MIN_TS_MS <= t < MAX_TS_MS:
        ts: int = t
    else:
        if t is None:
            return _bad("missing_time" if "t" not in msg else "invalid_time", raw)
        ts, problem = _time_ms(t)
        if problem:
            return _bad(problem, raw)
    size = msg.get(size_field)
    if type(size) is int and size >= 0:
        size = float(size)
    elif type(size) is not float or not 0.0 <= size < _INF:
        size = _size(msg, size_field)
        if size is None:
            return _bad("invalid_size", raw)
    if feed == "us":
        ms = msg.get("ms")
        return Tick(symbol, ts, price, size, _NAN, _NAN, feed, ms if type(ms) is str else "")
    return Tick(symbol, ts, price, size, _NAN, _NAN, feed)


def _parse_quote(
    raw: str | bytes | bytearray,
    symbols: Mapping[str, str],
    feed: str,
    ask_field: str,
    bid_field: str,
) -> ParseResult:
    try:
        msg = _loads(raw)
    except (ValueError, TypeError, RecursionError):  # JSONDecodeError, UnicodeDecodeError
        return _bad("not_json", raw)
    if type(msg) is not dict:
        return _bad("not_object", raw)
    code = msg.get("s")
    symbol = symbols.get(code) if type(code) is str else None
    if symbol is None:
        found = _slow_symbol(msg, symbols, raw)
        if type(found) is not str:
            return found  # type: ignore[return-value]
        symbol = found
    a = msg.get(ask_field)
    b = msg.get(bid_field)
    if type(a) is float and type(b) is float and 0.0 < a < _INF and 0.0 < b < _INF:
        ask: float = a
        bid: float = b
    else:
        if a is None or b is None:
            missing = ask_field not in msg or bid_field not in msg
            return _bad("missing_price" if missing else "invalid_price", raw)
        ask, problem = _price_problem(a)
        if problem:
            return _bad(problem, raw)
        bid, problem = _price_problem(b)
        if problem:
            return _bad(problem, raw)
    if bid > ask:
        return _bad("crossed_quote", raw)
    t = msg.get("t")
    if type(t) is int and MIN_TS_MS <= t < MAX_TS_MS:
        ts: int = t
    else:
        if t is None:
            return _bad("missing_time" if "t" not in msg else "invalid_time", raw)
        ts, problem = _time_ms(t)
        if problem:
            return _bad(problem, raw)
    mid = (ask + bid) / 2
    if mid == _INF:
        return _bad("non_finite_price", raw)
    return Tick(symbol, ts, mid, _NAN, bid, ask, feed)


def parse_frame(
    feed: str, raw: str | bytes | bytearray, symbol_map: Mapping[str, str]
) -> ParseResult:
    """Parse one frame of ``feed``; ``symbol_map`` maps ws codes to canonical symbols.

    Returns a Tick, a StatusFrame or a BadFrame; never raises for any ``raw``
    (an unknown ``feed`` is a programming error: InvalidInputError).
    """
    if feed == "us":
        return _parse_trade(raw, symbol_map, "us", "v")
    if feed == "forex":
        return _parse_quote(raw, symbol_map, "forex", "a", "b")
    if feed == "crypto":
        return _parse_trade(raw, symbol_map, "crypto", "q")
    if feed == "us-quote":
        return _parse_quote(raw, symbol_map, "us-quote", "ap", "bp")
    check_feed(feed)
    raise AssertionError("unreachable")


def frame_parser(
    feed: str, symbol_map: Mapping[str, str]
) -> Callable[[str | bytes | bytearray], ParseResult]:
    """``parse_frame`` bound to a feed and symbol map (the feed is checked once)."""
    check_feed(feed)
    if feed in ("us", "crypto"):
        size_field = "v" if feed == "us" else "q"

        def parse_trade(raw: str | bytes | bytearray) -> ParseResult:
            return _parse_trade(raw, symbol_map, feed, size_field)

        return parse_trade
    ask_field, bid_field = ("a", "b") if feed == "forex" else ("ap", "bp")

    def parse_quote(raw: str | bytes | bytearray) -> ParseResult:
        return _parse_quote(raw, symbol_map, feed, ask_field, bid_field)

    return parse_quote

"""EODHD's REST intraday JSON: render (for the simulator) and parse (for the client).

The answer is a JSON array of
``{"timestamp": 1627896900, "gmtoffset": 0, "datetime": "2021-08-02 09:35:00",
"open": 146.1, "high": 146.3, "low": 145.9, "close": 146.2, "volume": 123456}``
with ``timestamp`` the bar's start in Unix seconds UTC. Values may be null.

Parsing is the ingest hot path: a numba byte scanner reads the expected shape
straight into columns (numbers are converted exactly, with the Clinger fast
path; the rare number it cannot convert exactly is handed to Python's
``float``). Anything unexpected (a syntax error, an error object, a missing
field, a nested value, a string where a number belongs) sends the body to the
careful pure-Python parser, which either succeeds or raises ``DataFormatError``
with a clear, redacted message.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numba
import numpy as np
import pandas as pd

from hedgeflow.columns import CLOSE, HIGH, LOW, OPEN, TS, VOLUME
from hedgeflow.errors import DataFormatError
from hedgeflow.secrets import redact
from hedgeflow.sources.base import bars_frame, empty_bars

PRICE_FIELDS: tuple[str, ...] = (OPEN, HIGH, LOW, CLOSE)
EXCERPT_CHARS = 80
_MAX_EXACT_INT = 1 << 53
_MIN_BAR_BYTES = len(b'{"timestamp":0,"open":0,"high":0,"low":0,"close":0}')


# -- render ---------------------------------------------------------------------------


def _num(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    return repr(x)


def _volume(x: float) -> str:
    if not math.isfinite(x):
        return "null"
    if x.is_integer() and abs(x) < _MAX_EXACT_INT:
        return str(int(x))  # EODHD writes share volumes as integers
    return repr(x)


def render_intraday_json(bars: pd.DataFrame) -> bytes:
    """The bars as EODHD's intraday JSON array (compact, floats as ``repr`` so they
    round-trip exactly, null for NaN)."""
    if len(bars) == 0:
        return b"[]"
    ts_us = bars[TS].dt.tz_convert("UTC").dt.as_unit("us").array.asi8
    seconds = (ts_us // 1_000_000).tolist()
    stamps = np.datetime_as_string((ts_us // 1_000_000).astype("datetime64[s]"), unit="s").tolist()
    cols = [bars[c].to_numpy(dtype="float64").tolist() for c in PRICE_FIELDS]
    volume = bars[VOLUME].to_numpy(dtype="float64").tolist()
    rows = [
        f'{{"timestamp":{t},"gmtoffset":0,"datetime":"{d.replace("T", " ")}",'
        f'"open":{_num(o)},"high":{_num(h)},"low":{_num(lo)},"close":{_num(c)},'
        f'"volume":{_volume(v)}}}'
        for t, d, o, h, lo, c, v in zip(seconds, stamps, *cols, volume, strict=True)
    ]
    return ("[" + ",".join(rows) + "]").encode("ascii")


# -- fast parse -----------------------------------------------------------------------

# Scanner outcome codes.
_OK = 0
_BAIL = 1  # not the expected shape: let the careful parser decide
_TOO_MANY_SLOW = 2

_POW10 = np.array([10.0**i for i in range(23)], dtype=np.float64)  # exact doubles

# Field codes: 0 timestamp, 1-4 open/high/low/close, 5 volume, -1 other.
_KEYS = [b"timestamp", b"open", b"high", b"low", b"close", b"volume"]
_KEY_LENS = np.array([len(k) for k in _KEYS], dtype=np.int64)
_KEY_BYTES = np.zeros((len(_KEYS), 16), dtype=np.uint8)
for _k, _word in enumerate(_KEYS):
    _KEY_BYTES[_k, : len(_word)] = np.frombuffer(_word, dtype=np.uint8)


@numba.njit(cache=True, nogil=True)
def _skip_ws(buf: np.ndarray, i: int, n: int) -> int:
    while i < n:
        c = buf[i]
        if c == 32 or c == 10 or c == 13 or c == 9:
            i += 1
        else:
            break
    return i


@numba.njit(cache=True, nogil=True)
def _key_code(buf: np.ndarray, s: int, e: int, keys: np.ndarray, lens: np.ndarray) -> int:
    """Index of the key ``buf[s:e]`` in ``keys`` (padded byte rows), or -1."""
    length = e - s
    for k in range(keys.shape[0]):
        if lens[k] != length:
            continue
        same = True
        for j in range(length):
            if buf[s + j] != keys[k, j]:
                same = False
                break
        if same:
            return k
    return -1


@numba.njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    ts: np.ndarray,
    vals: np.ndarray,
    slow_pos: np.ndarray,
    pow10: np.ndarray,
    keys: np.ndarray,
    lens: np.ndarray,
) -> tuple[int, int, int]:
    """Scan an intraday array into ``ts`` (Unix s) and ``vals`` (5 x n).

    Returns (code, bars, slow values). ``slow_pos`` gets (row, field, start, end) of
    numbers that need Python's float for an exact conversion.
    """
    n = len(buf)
    cap = ts.shape[0]
    n_slow = 0
    i = 0
    if i < n and buf[i] <= 32:
        i = _skip_ws(buf, i, n)
    if i >= n or buf[i] != 91:  # [
        return _BAIL, 0, 0
    i = i + 1
    if i < n and buf[i] <= 32:
        i = _skip_ws(buf, i, n)
    row = 0
    if i < n and buf[i] == 93:  # ]
        i = i + 1
        if i < n and buf[i] <= 32:
            i = _skip_ws(buf, i, n)
        return (_OK if i == n else _BAIL), 0, 0
    while True:
        if i >= n or buf[i] != 123 or row >= cap:  # {
            return _BAIL, row, n_slow
        i = i + 1
        if i < n and buf[i] <= 32:
            i = _skip_ws(buf, i, n)
        seen = 0
        for f in range(5):
            vals[f, row] = np.nan
        if i < n and buf[i] == 125:  # empty object
            return _BAIL, row, n_slow
        while True:
            # key
            if i >= n or buf[i] != 34:
                return _BAIL, row, n_slow
            ks = i + 1
            j = ks
            while j < n and buf[j] != 34:
                if buf[j] == 92:  # escapes in keys: not the expected shape
                    return _BAIL, row, n_slow
                j += 1
            if j >= n:
                return _BAIL, row, n_slow
            code = _key_code(buf, ks, j, keys, lens)
            i = j + 1
            if i < n and buf[i] <= 32:
                i = _skip_ws(buf, i, n)
            if i >= n or buf[i] != 58:  # :
                return _BAIL, row, n_slow
            i = i + 1
            if i < n and buf[i] <= 32:
                i = _skip_ws(buf, i, n)
            if i >= n:
                return _BAIL, row, n_slow
            c = buf[i]
            if c == 34:  # a string value: fine for other keys only
                if code >= 0:
                    return _BAIL, row, n_slow
                j = i + 1
                while j < n and buf[j] != 34:
                    if buf[j] == 92:
                        j += 1
                    j += 1
                if j >= n:
                    return _BAIL, row, n_slow
                i = j + 1
            elif c == 110:  # null
                if i + 4 > n or buf[i + 1] != 117 or buf[i + 2] != 108 or buf[i + 3] != 108:
                    return _BAIL, row, n_slow
                if code == 0:
                    return _BAIL, row, n_slow
                i += 4
                if code > 0:
                    seen |= 1 << code
            elif c == 45 or (48 <= c <= 57):  # a number
                start = i
                neg = c == 45
                if neg:
                    i += 1
                mant = np.uint64(0)
                digits = 0
                exact = True
                int_digits = 0
                lead = i
                while i < n and 48 <= buf[i] <= 57:
                    if mant < np.uint64(900719925474099):
                        mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
                    else:
                        exact = False
                    i += 1
                    int_digits += 1
                if int_digits == 0 or (int_digits > 1 and buf[lead] == 48):
                    return _BAIL, row, n_slow
                frac = 0
                if i < n and buf[i] == 46:  # .
                    i += 1
                    while i < n and 48 <= buf[i] <= 57:
                        if mant < np.uint64(900719925474099):
                            mant = mant * np.uint64(10) + np.uint64(buf[i] - 48)
                            frac += 1
                        else:
                            exact = False
                        i += 1
                        digits += 1
                    if digits == 0:
                        return _BAIL, row, n_slow
                exp = 0
                if i < n and (buf[i] == 101 or buf[i] == 69):  # e E
                    i += 1
                    eneg = False
                    if i < n and (buf[i] == 43 or buf[i] == 45):
                        eneg = buf[i] == 45
                        i += 1
                    ed = 0
                    while i < n and 48 <= buf[i] <= 57:
                        if exp < 10000:
                            # int() first: uncompiled (NUMBA_DISABLE_JIT), buf[i] - 48
                            # is a numpy uint8 and would make exp a wrapping uint8 too
                            exp = exp * 10 + (int(buf[i]) - 48)
                        i += 1
                        ed += 1
                    if ed == 0:
                        return _BAIL, row, n_slow
                    if eneg:
                        exp = -exp
                if i < n:
                    t = buf[i]
                    if not (t == 44 or t == 125 or t == 32 or t == 10 or t == 13 or t == 9):
                        return _BAIL, row, n_slow
                if code == 0:
                    if frac != 0 or exp != 0 or not exact or digits != 0:
                        return _BAIL, row, n_slow
                    v = np.int64(mant)
                    ts[row] = -v if neg else v
                    seen |= 1
                elif code > 0:
                    e10 = exp - frac
                    if exact and -22 <= e10 <= 22:
                        x = np.float64(mant)
                        x = x / pow10[-e10] if e10 < 0 else x * pow10[e10]
                        vals[code - 1, row] = -x if neg else x
                    else:
                        if n_slow >= slow_pos.shape[0]:
                            return _TOO_MANY_SLOW, row, n_slow
                        slow_pos[n_slow, 0] = row
                        slow_pos[n_slow, 1] = code - 1
                        slow_pos[n_slow, 2] = start
                        slow_pos[n_slow, 3] = i
                        n_slow += 1
                    seen |= 1 << code
            elif c == 116 or c == 102:  # true / false for other keys
                if code >= 0:
                    return _BAIL, row, n_slow
                while i < n and 97 <= buf[i] <= 122:
                    i += 1
            else:  # nested values and anything else
                return _BAIL, row, n_slow
            if i < n and buf[i] <= 32:
                i = _skip_ws(buf, i, n)
            if i >= n:
                return _BAIL, row, n_slow
            if buf[i] == 44:  # , next key
                i = i + 1
                if i < n and buf[i] <= 32:
                    i = _skip_ws(buf, i, n)
                continue
            if buf[i] == 125:  # } end of object
                i += 1
                break
            return _BAIL, row, n_slow
        if (seen & 0b11111) != 0b11111:  # timestamp and the four prices are required
            return _BAIL, row, n_slow
        row += 1
        if i < n and buf[i] <= 32:
            i = _skip_ws(buf, i, n)
        if i >= n:
            return _BAIL, row, n_slow
        if buf[i] == 44:
            i = i + 1
            if i < n and buf[i] <= 32:
                i = _skip_ws(buf, i, n)
            continue
        if buf[i] == 93:
            i = i + 1
            if i < n and buf[i] <= 32:
                i = _skip_ws(buf, i, n)
            return (_OK if i == n else _BAIL), row, n_slow
        return _BAIL, row, n_slow


def parse_intraday_json(body: bytes) -> pd.DataFrame:
    """EODHD's intraday JSON -> a bars frame (sorted as received; not validated).

    Raises DataFormatError for anything that is not an array of bar objects.
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = bytes(body)
    # No bar object is shorter than {"timestamp":0,"open":0,"high":0,"low":0,"close":0}.
    cap = len(body) // _MIN_BAR_BYTES + 1
    buf = np.frombuffer(body, dtype=np.uint8)
    ts = np.empty(cap, dtype=np.int64)
    vals = np.empty((5, cap), dtype=np.float64)
    slow = np.empty((min(cap * 5, 65536), 4), dtype=np.int64)
    code, rows, n_slow = _scan(buf, ts, vals, slow, _POW10, _KEY_BYTES, _KEY_LENS)
    if code != _OK:
        return _parse_careful(body)
    for r, f, s, e in slow[:n_slow].tolist():
        vals[f, r] = float(body[s:e])
    if rows == 0:
        return empty_bars()
    return bars_frame(ts[:rows] * 1_000_000, *vals[:, :rows])


# -- careful parse (and error messages) -----------------------------------------------


def excerpt(body: bytes, limit: int = EXCERPT_CHARS) -> str:
    """A short, printable, redacted beginning of a body for error messages."""
    text = body[: limit * 4].decode("utf-8", errors="replace")
    text = re.sub(r"\s+", " ", text).strip()
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    text = redact(text)
    return text[:limit] + ("..." if len(text) > limit else "")


def _looks_like_html(body: bytes) -> bool:
    head = body[:512].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<head", b"<body", b"<?xml", b"<"))


def _html_title(body: bytes) -> str:
    match = re.search(rb"<title[^>]*>(.*?)</title>", body[:4096], re.IGNORECASE | re.DOTALL)
    return excerpt(match.group(1), 60) if match else ""


def _vendor_message(obj: dict[str, Any]) -> str:
    for key in ("error", "message", "errors", "Error", "Message"):
        if key in obj:
            value = obj[key]
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            return excerpt(text.encode("utf-8"), 120)
    return "keys " + excerpt(", ".join(map(str, list(obj)[:8])).encode("utf-8"), 80)


def _parse_careful(body: bytes) -> pd.DataFrame:
    if not body.strip():
        raise DataFormatError("EODHD returned an empty response body instead of a JSON array")
    if _looks_like_html(body):
        title = _html_title(body)
        detail = f" (title: {title!r})" if title else f" (starts with {excerpt(body, 60)!r})"
        raise DataFormatError(f"EODHD returned an HTML error page instead of JSON{detail}")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(
            f"EODHD returned a body that is not UTF-8 JSON (starts with {excerpt(body)!r})"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # A complete array or object ends with its closing bracket.
        cut = not body.rstrip().endswith((b"]", b"}")) or exc.pos >= len(text.rstrip())
        kind = "truncated" if cut else "invalid"
        raise DataFormatError(
            f"EODHD returned {kind} JSON ({exc.msg} at char {exc.pos} of {len(text)}; "
            f"starts with {excerpt(body, 60)!r})"
        ) from None
    if isinstance(data, dict):
        raise DataFormatError(
            f"EODHD returned a JSON object instead of an array of bars: {_vendor_message(data)}"
        )
    if not isinstance(data, list):
        raise DataFormatError(
            f"EODHD returned JSON {type(data).__name__} instead of an array of bars"
        )
    if not data:
        return empty_bars()
    for i, row in enumerate(data):
        if not isinstance(row, dict):
            raise DataFormatError(f"EODHD bar {i} is a JSON {type(row).__name__}, not an object")
        missing = [k for k in ("timestamp", *PRICE_FIELDS) if k not in row]
        if missing:
            raise DataFormatError(f"EODHD bar {i} has no {', '.join(missing)} field")
    ts = np.array([_timestamp(i, row["timestamp"]) for i, row in enumerate(data)], dtype="int64")
    cols = [
        np.array([_number(i, field, row.get(field)) for i, row in enumerate(data)], dtype="float64")
        for field in (*PRICE_FIELDS, VOLUME)
    ]
    return bars_frame(ts * 1_000_000, *cols)


def _timestamp(i: int, value: Any) -> int:
    if isinstance(value, bool) or value is None:
        raise DataFormatError(f"EODHD bar {i} has timestamp {value!r}, not Unix seconds")
    if isinstance(value, str):
        try:
            value = float(value) if "." in value or "e" in value.lower() else int(value)
        except ValueError:
            raise DataFormatError(
                f"EODHD bar {i} has timestamp {excerpt(value.encode(), 30)!r}, not Unix seconds"
            ) from None
    if isinstance(value, float):
        if not value.is_integer():
            raise DataFormatError(f"EODHD bar {i} has timestamp {value!r}, not whole seconds")
        value = int(value)
    if not isinstance(value, int) or abs(value) > 2**40:
        raise DataFormatError(f"EODHD bar {i} has timestamp {value!r}, not Unix seconds")
    return value


def _number(i: int, field: str, value: Any) -> float:
    """A numeric value; null stays NaN (the validator quarantines null prices)."""
    if value is None:
        return math.nan
    if isinstance(value, bool):
        raise DataFormatError(f"EODHD bar {i} has {field} {value!r}, not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)  # numeric strings convert exactly
        except ValueError:
            pass
    raise DataFormatError(
        f"EODHD bar {i} has {field} {excerpt(json.dumps(value).encode(), 30)!r}, not a number"
    )

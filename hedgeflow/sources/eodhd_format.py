"""EODHD's REST intraday JSON: render (for the simulator) and parse (for the client).

The answer is a JSON array of
``{"timestamp": 1627896900, "gmtoffset": 0, "datetime": "2021-08-02 09:35:00",
"open": 146.1, "high": 146.3, "low": 145.9, "close": 146.2, "volume": 123456}``
with ``timestamp`` the bar's start in Unix seconds UTC. Values may be null.

Parsing is the ingest hot path: a numba byte scanner reads the expected shape
straight into columns; a large body in parts, one thread each (split at object
starts; each part's scan checks that it ends exactly where the next begins, so the
result is the single scan's bit for bit, else the body is scanned whole). Numbers
are converted exactly: Clinger's fast path
(mantissa <= 2**53, |exponent| <= 22), else the Eisel-Lemire algorithm on the
first 19 significant digits (as in fast_float: a 128-bit truncated power of five,
correctly rounded; full-precision prices of 17 digits take this path); the rare
number neither converts (more than 19 digits, Eisel-Lemire's ambiguous case) is
handed to Python's ``float``, in bulk with ``orjson``. Anything unexpected (a
syntax error, an error object, a missing field, a nested value, a string where a
number belongs) sends the body to the careful parser (decoded with ``orjson``;
the standard library's ``json`` when orjson refuses, for its lenience and its error
positions), which either succeeds or raises ``DataFormatError`` with a clear,
redacted message.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import orjson
import pandas as pd

from hedgeflow.columns import CLOSE, HIGH, LOW, OPEN, TS, VOLUME
from hedgeflow.errors import DataFormatError
from hedgeflow.secrets import redact
from hedgeflow.sources.base import bars_frame, empty_bars

PRICE_FIELDS: tuple[str, ...] = (OPEN, HIGH, LOW, CLOSE)
EXCERPT_CHARS = 80
_MAX_EXACT_INT = 1 << 53
_MIN_BAR_BYTES = len(b'{"timestamp":0,"open":0,"high":0,"low":0,"close":0}')
_MAX_SLOW = 65536  # numbers left to float() per body; more: the careful parser
# A body of at least _PART_MIN_BYTES per part is scanned in parts, one thread each
# (up to _MAX_PARTS, and the CPUs this process may use); smaller ones in one.
_PART_MIN_BYTES = 1 << 20
_MAX_PARTS = 4
_SPLIT_SEARCH = 1 << 16  # how far past its share a part's start is looked for


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
_STOP = 3  # a part's scan reached its end at an object start
_MISSED = 4  # a part's scan passed its end inside an object: scan the body whole

_POW10 = np.array([10.0**i for i in range(23)], dtype=np.float64)  # exact doubles

# Eisel-Lemire: 5**q for q in [-342, 308], normalized to 128 bits (the top bit set),
# truncated (q >= 0) or rounded up (q < 0), as two 64-bit halves (fast_float's table,
# computed here with Python's integers).
_Q_MIN, _Q_MAX = -342, 308


def _pow5_128(q: int) -> int:
    if q >= 0:
        p = 5**q
        shift = 128 - p.bit_length()
        return p << shift if shift >= 0 else p >> -shift
    p = 5**-q
    z = (p - 1).bit_length()  # smallest z with 2**z >= p
    c = (1 << (z + 127 if q >= -27 else 2 * z + 128)) // p + 1
    return c >> max(c.bit_length() - 128, 0)


_POW5 = np.array(
    [[_pow5_128(q) >> 64, _pow5_128(q) & (2**64 - 1)] for q in range(_Q_MIN, _Q_MAX + 1)],
    dtype=np.uint64,
)
_M32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)
_U1 = np.uint64(1)
_U0 = np.uint64(0)
_ALL64 = np.uint64(0xFFFFFFFFFFFFFFFF)
_PRECISION_MASK = np.uint64(0x1FF)  # the 64 - 55 low bits of the high half
_MAX_MANT = np.uint64(10**18)  # 19 digits fit an uint64: accumulate while below this
_EXACT_INT = np.uint64(1 << 53)
_NO_VALUE = -1.0  # compute_float's "cannot tell": the caller hands the text to float()

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
def _mul128(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """The full product a * b as (high, low) 64-bit halves (32-bit pieces: no
    intermediate overflows, so the uncompiled function gives the same bits)."""
    a_lo, a_hi = a & _M32, a >> _U32
    b_lo, b_hi = b & _M32, b >> _U32
    p0 = a_lo * b_lo
    p1 = a_lo * b_hi
    p2 = a_hi * b_lo
    p3 = a_hi * b_hi
    mid = (p0 >> _U32) + (p1 & _M32) + (p2 & _M32)
    low = (p0 & _M32) | ((mid & _M32) << _U32)
    high = p3 + (p1 >> _U32) + (p2 >> _U32) + (mid >> _U32)
    return high, low


@numba.njit(cache=True, nogil=True)
def _add64(a: np.uint64, b: np.uint64) -> tuple[np.uint64, np.uint64]:
    """(a + b) mod 2**64 and its carry, without overflowing (see _mul128)."""
    lo = (a & _M32) + (b & _M32)
    hi = (a >> _U32) + (b >> _U32) + (lo >> _U32)
    return ((hi & _M32) << _U32) | (lo & _M32), hi >> _U32


@numba.njit(cache=True, nogil=True)
def _eisel_lemire(w: np.uint64, q: int, pow5: np.ndarray) -> float:
    """The double nearest to w * 10**q (w < 10**19, ties to even), or _NO_VALUE when
    the 128-bit product cannot tell (never, per Mushtak & Lemire 2023, but checked as
    fast_float once did). fast_float's ``compute_float<binary64>``."""
    if w == _U0 or q < _Q_MIN:
        return 0.0
    if q > _Q_MAX:
        return np.inf
    lz = 0
    probe = w
    while probe < np.uint64(1 << 63):
        probe = probe << _U1
        lz += 1
    w = probe
    index = q - _Q_MIN
    high, low = _mul128(w, pow5[index, 0])
    if (high & _PRECISION_MASK) == _PRECISION_MASK:
        high2, _ = _mul128(w, pow5[index, 1])
        low, carry = _add64(low, high2)
        high = high + carry
    if low == _ALL64 and not (-27 <= q <= 55):
        return _NO_VALUE
    upperbit = np.int64(high >> np.uint64(63))
    shift = np.uint64(upperbit + 9)
    mantissa = high >> shift
    power2 = (((152170 + 65536) * q) >> 16) + 63 + upperbit - lz + 1023
    if power2 <= 0:  # subnormal
        if -power2 + 1 >= 64:
            return 0.0
        mantissa = mantissa >> np.uint64(-power2 + 1)
        mantissa = (mantissa + (mantissa & _U1)) >> _U1
        return math.ldexp(float(mantissa), -1074)
    tie = low <= _U1 and -4 <= q <= 23 and (mantissa & np.uint64(3)) == _U1
    if tie and (mantissa << shift) == high:  # exactly halfway: round to even
        mantissa = mantissa & ~_U1
    mantissa = (mantissa + (mantissa & _U1)) >> _U1
    if mantissa >= np.uint64(2 << 52):
        mantissa = np.uint64(1 << 52)
        power2 += 1
    if power2 >= 0x7FF:
        return np.inf
    return math.ldexp(float(mantissa), int(power2) - 1075)


@numba.njit(cache=True, nogil=True)
def _scan(
    buf: np.ndarray,
    start: int,
    stop: int,
    ts: np.ndarray,
    vals: np.ndarray,
    slow_pos: np.ndarray,
    pow10: np.ndarray,
    keys: np.ndarray,
    lens: np.ndarray,
) -> tuple[int, int, int]:
    """Scan an intraday array into ``ts`` (Unix s) and ``vals`` (5 x n).

    Returns (code, bars, slow values). ``slow_pos`` gets (row, field, start, end) of
    numbers that need Python's float for an exact conversion (rows counted from this
    scan's first bar; start and end are positions in ``buf``).

    The whole array: ``start`` 0 and ``stop`` ``len(buf)``. A part of it (see
    ``_scan_parts``): ``start`` > 0 is where the part's first object is expected
    (its ``{``: the scan goes on from there as the whole scan would from an object
    start), and ``stop`` < ``len(buf)`` where the next part's begins: at the first
    object start at or past ``stop`` the scan returns _STOP when it is exactly
    ``stop`` (the whole scan would be at an object start there too) and _MISSED when
    past it (``stop`` was inside an object: not a place to split). Up to that point
    the scan reads the whole buffer exactly as the whole scan does, so a bail or the
    array's end before it are the whole scan's answer too.
    """
    n = len(buf)
    cap = ts.shape[0]
    limit = stop if stop < n else n + 1  # the last part (or the whole) has no stop
    n_slow = 0
    i = start
    row = 0
    if start == 0:
        if i < n and buf[i] <= 32:
            i = _skip_ws(buf, i, n)
        if i >= n or buf[i] != 91:  # [
            return _BAIL, 0, 0
        i = i + 1
        if i < n and buf[i] <= 32:
            i = _skip_ws(buf, i, n)
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
                    if mant < _MAX_MANT:
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
                        if mant < _MAX_MANT:
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
                    x = _NO_VALUE
                    if exact and mant <= _EXACT_INT and -22 <= e10 <= 22:
                        x = np.float64(mant)
                        x = x / pow10[-e10] if e10 < 0 else x * pow10[e10]
                    elif exact:
                        x = _eisel_lemire(mant, e10, _POW5)
                    if x != _NO_VALUE:
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
            if i >= limit:  # the next object starts at or past this part's end
                return (_STOP if i == stop else _MISSED), row, n_slow
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
    A large body is scanned in parts, one thread each (see ``_scan_parts``).
    """
    if isinstance(body, str):
        body = body.encode("utf-8")
    body = bytes(body)
    scanned = _scan_parts(body, _split_points(body, _parse_threads(len(body))))
    if scanned is None:
        return _parse_careful(body)
    ts, vals = scanned
    if len(ts) == 0:
        return empty_bars()
    return _bars_frame(ts, vals)


def _parse_threads(size: int) -> int:
    """How many parts (threads) to scan a body of ``size`` bytes in."""
    if size < _PART_MIN_BYTES:
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(_MAX_PARTS, cpus, size // _PART_MIN_BYTES))


def _split_points(body: bytes, parts: int) -> list[int]:
    """Where the parts of ``body`` begin: 0, then for each further part the first
    ``{`` from its share of the body on that follows a ``}`` and a ``,`` (whitespace
    allowed between): an object start, unless the text is inside a string (then the
    scan of the part before finds out, see ``_scan_parts``). A part whose search
    finds none within _SPLIT_SEARCH bytes is left out."""
    starts = [0]
    n = len(body)
    for k in range(1, parts):
        pos = max(k * n // parts, starts[-1] + 1)
        end = min(pos + _SPLIT_SEARCH, n)
        while (brace := body.find(b"{", pos, end)) >= 0:
            p = _skip_ws_back(body, brace - 1)
            if p > 0 and body[p] == 44:  # ,
                p = _skip_ws_back(body, p - 1)
                if p > 0 and body[p] == 125:  # }
                    starts.append(brace)
                    break
            pos = brace + 1
    return starts


def _skip_ws_back(body: bytes, p: int) -> int:
    while p > 0 and body[p] in b" \t\r\n":
        p -= 1
    return p


def _scan_parts(body: bytes, starts: Sequence[int]) -> tuple[np.ndarray, np.ndarray] | None:
    """Scan ``body`` in parts, part k from ``starts[k]`` to ``starts[k + 1]`` (the last
    to the end; ``starts[0]`` is 0, the others increasing), each in a thread of its own
    (the compiled scanner releases the GIL). Returns (ts in Unix microseconds, values
    5 x bars) or None when the body is not the expected shape (the careful parser decides).

    The result is the single scan's, bit for bit, wherever the parts begin: a part's
    scan reads the whole buffer, and tells whether the single scan would be at an
    object start exactly where the next part begins (_STOP). Only then is the next
    part's answer used (a scan from an object start does not depend on what came
    before it); a part that ends inside an object (_MISSED: the split fell in a
    string) sends the body to one single scan. Parts after a part that reached the
    array's end, or bailed, are ignored (that is the single scan's answer).
    """
    buf = np.frombuffer(body, dtype=np.uint8)
    ends = [*starts[1:], len(buf)]

    # No bar object is shorter than {"timestamp":0,"open":0,"high":0,"low":0,"close":0}.
    caps = [(end - start) // _MIN_BAR_BYTES + 1 for start, end in zip(starts, ends, strict=True)]
    # The first part scans straight into the result's arrays (room for every part's
    # bars: at least the body's, should it read to the end), the others into their own.
    arrays = [
        (
            np.empty(sum(caps) if k == 0 else cap, dtype=np.int64),
            np.empty((5, sum(caps) if k == 0 else cap), dtype=np.float64),
            np.empty((min(cap * 5, _MAX_SLOW), 4), dtype=np.int64),
        )
        for k, cap in enumerate(caps)
    ]

    def scan(k: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        ts, vals, slow = arrays[k]
        code, rows, n_slow = _scan(
            buf, starts[k], ends[k], ts, vals, slow, _POW10, _KEY_BYTES, _KEY_LENS
        )
        return int(code), ts[:rows], vals[:, :rows], slow[:n_slow]

    if len(starts) == 1:
        results = [scan(0)]
    else:
        with ThreadPoolExecutor(len(starts) - 1, thread_name_prefix="eodhd-scan") as pool:
            others = [pool.submit(scan, k) for k in range(1, len(starts))]
            results = [scan(0), *(f.result() for f in others)]
    used = []
    for code, ts, vals, slow in results:
        if code == _MISSED:
            return _scan_parts(body, [0])
        if code not in (_OK, _STOP):
            return None
        used.append((ts, vals, slow))
        if code == _OK:  # the array's end (the last part's, or an earlier one's)
            break
    if sum(len(slow) for _, _, slow in used) > _MAX_SLOW:  # as the single scan
        return None
    rows = sum(len(ts) for ts, _, _ in used)
    ts_out, vals_out = arrays[0][0][:rows], arrays[0][1][:, :rows]
    slows = []
    row = 0
    for k, (ts, vals, slow) in enumerate(used):
        if k:  # the first part's bars are in place
            ts_out[row : row + len(ts)] = ts
            vals_out[:, row : row + len(ts)] = vals
        if len(slow):
            slows.append(slow + np.array([row, 0, 0, 0], dtype=np.int64))
        row += len(ts)
    np.multiply(ts_out, 1_000_000, out=ts_out)  # seconds -> us
    if slows:
        _convert_slow(body, vals_out, np.concatenate(slows))
    return ts_out, vals_out


def _bars_frame(ts_us: np.ndarray, vals: np.ndarray) -> pd.DataFrame:
    """The bars frame of the scan's arrays, taking ``vals`` (5 x bars, each row
    contiguous: the frame's float block as it is) without a copy: the frame is its
    only owner."""
    frame = pd.DataFrame(vals.T, columns=[*PRICE_FIELDS, VOLUME], copy=False)
    ts = pd.DatetimeIndex(ts_us.view("datetime64[us]"), tz="UTC")
    frame.insert(0, TS, ts)
    return frame


def _convert_slow(body: bytes, vals: np.ndarray, slow: np.ndarray) -> None:
    """The numbers the scanner left (row, field, start, end): Python's float, in bulk:
    their texts joined into one JSON array for orjson (exact, like float()); numbers
    orjson refuses (beyond double range, which float() makes inf) one by one."""
    texts = [body[s:e] for s, e in slow[:, 2:].tolist()]
    try:
        values = np.array(orjson.loads(b"[" + b",".join(texts) + b"]"), dtype=np.float64)
    except (orjson.JSONDecodeError, OverflowError, TypeError):
        values = np.array([float(t) for t in texts], dtype=np.float64)
    if values.shape != (len(texts),):
        values = np.array([float(t) for t in texts], dtype=np.float64)
    vals[slow[:, 1], slow[:, 0]] = values


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


def _decode(body: bytes, text: str) -> Any:
    """``json.loads(text)``, through orjson when it accepts the body (the same values:
    floats exact; it refuses what json.loads allows beyond strict JSON, such as
    integers over 64 bits, NaN or lone surrogates: those go to json.loads)."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return json.loads(text)


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
        data = _decode(body, text)
    except json.JSONDecodeError as exc:
        # A complete array or object ends with its closing bracket.
        cut = not body.rstrip().endswith((b"]", b"}")) or exc.pos >= len(text.rstrip())
        kind = "truncated" if cut else "invalid"
        raise DataFormatError(
            f"EODHD returned {kind} JSON ({exc.msg} at char {exc.pos} of {len(text)}; "
            f"starts with {excerpt(body, 60)!r})"
        ) from None
    except RecursionError:  # orjson stops at depth 1024, json.loads at the recursion limit
        raise DataFormatError(
            f"EODHD returned JSON nested too deeply to be bars (starts with {excerpt(body, 60)!r})"
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

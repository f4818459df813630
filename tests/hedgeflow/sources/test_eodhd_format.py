from __future__ import annotations

import json
import math
import random
import struct
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.columns import BAR_COLUMNS, TS_DTYPE
from hedgeflow.errors import DataFormatError
from hedgeflow.secrets import register_secret
from hedgeflow.sources import eodhd_format
from hedgeflow.sources.base import bars_frame
from hedgeflow.sources.eodhd_format import (
    _parse_careful,
    parse_intraday_json,
    render_intraday_json,
)

from .conftest import MARKET, utc


def _frame(ts_s: list[int], rows: list[list[float]]) -> pd.DataFrame:
    cols = np.array(rows, dtype="float64").reshape(-1, 5).T
    return bars_frame(np.array(ts_s, dtype="int64") * 1_000_000, *cols)


def test_render_is_eodhds_exact_shape() -> None:
    bars = _frame([1627896900], [[146.1, 146.3, 145.9, 146.2, 123456.0]])
    body = render_intraday_json(bars)
    assert json.loads(body) == [
        {
            "timestamp": 1627896900,
            "gmtoffset": 0,
            "datetime": "2021-08-02 09:35:00",
            "open": 146.1,
            "high": 146.3,
            "low": 145.9,
            "close": 146.2,
            "volume": 123456,
        }
    ]
    assert b'"volume":123456}' in body  # integer volumes as EODHD writes them
    assert render_intraday_json(bars.iloc[:0]) == b"[]"


@pytest.mark.parametrize("symbol", ["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"])
def test_round_trip_is_exact(symbol: str) -> None:
    bars = MARKET.fetch_bars(symbol, "1m", utc(2024, 5, 1), utc(2024, 5, 4))
    parsed = parse_intraday_json(render_intraday_json(bars))
    pd.testing.assert_frame_equal(parsed, bars)


finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite, finite | st.just(math.nan)), max_size=20))
def test_round_trip_any_float(rows: list[tuple[float, ...]]) -> None:
    bars = _frame(list(range(0, 60 * len(rows), 60)), [list(r) for r in rows])
    body = render_intraday_json(bars)
    parsed = parse_intraday_json(body)
    pd.testing.assert_frame_equal(parsed, bars)
    pd.testing.assert_frame_equal(_parse_careful(body), bars)


# -- the scanner uncompiled (its .py_func) parses exactly like compiled -----------------

# Numbers whose conversion is easy to get wrong: exponents far outside uint8/int8 range
# (3.26e-238 once came out as 3.26e+18 uncompiled), the edges of the exact fast path
# (mantissa < 2**53, |e10| <= 22), 17 significant digits, ties, subnormals, overflow to
# inf and underflow to 0, signed zeros and long digit strings.
HARD_NUMBERS = [
    *("0", "-0", "0.0", "-0.0", "-0e5", "0e-400", "1", "-1", "0.1", "146.2", "-146.2"),
    *("1e22", "1e-22", "1e23", "1e-23", "3.0e-22", "12.5e-1", "0.1e1", "1E5", "1e+5"),
    *("1e-0", "1e0005", "9e15", "900719925474099", "9007199254740991", "9007199254740992"),
    *("9007199254740993", "9.007199254740993e15", "123456789012345.6", "0.30000000000000004"),
    *("1.2345678901234567", "-1.2345678901234567e-89", "8.98846567431158e307"),
    *("2.2250738585072014e-308", "2.2250738585072011e-308", "4.9e-324", "5e-324"),
    *("2.4703282292062328e-324", "2.4703282292062327e-324", "1.7976931348623157e308"),
    *("1.7976931348623158e308", "1.7976931348623159e308", "1e400", "-1e400", "1e-400"),
    *("1e99999", "1e-99999", "3.26e-238", "-3.26e-238", "2e256", "1e255", "1e-256"),
    *("1e128", "1e-128", "6.02214076e23", "1.602176634e-19"),
    "0." + "0" * 30 + "1",
    "1" + "0" * 40,
    "1.0000000000000000000000000001",
    "123456789012345678901234567890e-10",
    "7" * 100,
    "-" + "9" * 25 + "." + "9" * 25 + "e-300",
]
TIMESTAMPS = ["0", "-60", "1627896900", str(2**40), "-" + str(2**40)]


def _py_scan() -> Callable[..., tuple[int, int, int]]:
    """The scanner's pure-Python function (under NUMBA_DISABLE_JIT=1 ``_scan`` is it)."""
    return getattr(eodhd_format._scan, "py_func", eodhd_format._scan)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _body(numbers: list[str]) -> bytes:
    rows = [
        f'{{"timestamp":{TIMESTAMPS[k % len(TIMESTAMPS)]},"gmtoffset":0,'
        f'"open":{x},"high":{x},"low":{x},"close":{x},"volume":{x}}}'
        for k, x in enumerate(numbers)
    ]
    return ("[" + ",".join(rows) + "]").encode("ascii")


def _run_scan(
    scan: Callable[..., tuple[int, int, int]], body: bytes
) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray, np.ndarray]:
    m = eodhd_format
    cap = len(body) // m._MIN_BAR_BYTES + 1
    ts = np.zeros(cap, dtype=np.int64)
    vals = np.zeros((5, cap), dtype=np.float64)
    slow = np.zeros((cap * 5, 4), dtype=np.int64)
    buf = np.frombuffer(body, dtype=np.uint8)
    code, rows, n_slow = scan(buf, 0, len(buf), ts, vals, slow, m._POW10, m._KEY_BYTES, m._KEY_LENS)
    return (int(code), int(rows), int(n_slow)), ts[:rows], vals[:, :rows], slow[:n_slow]


def _assert_scanners_agree(numbers: list[str]) -> None:
    body = _body(numbers)
    compiled = _run_scan(eodhd_format._scan, body)
    py = _run_scan(_py_scan(), body)
    assert compiled[0] == py[0] == (eodhd_format._OK, len(numbers), compiled[0][2])
    np.testing.assert_array_equal(py[1], compiled[1])
    assert py[2].tobytes() == compiled[2].tobytes()  # bit-identical, -0.0 and inf included
    np.testing.assert_array_equal(py[3], compiled[3])


def test_scanner_uncompiled_parses_hard_numbers_like_compiled_and_float() -> None:
    # the fast path takes every body (no bail to the careful parser, which would hide
    # the scanner), and both the exact conversion and the float() hand-off are used
    (code, rows, n_slow), ts, _, _ = _run_scan(eodhd_format._scan, _body(HARD_NUMBERS))
    assert code == eodhd_format._OK and rows == len(HARD_NUMBERS)
    assert 0 < n_slow < 5 * rows
    assert ts.tolist() == [int(TIMESTAMPS[k % len(TIMESTAMPS)]) for k in range(rows)]
    _assert_scanners_agree(HARD_NUMBERS)


def test_parse_with_uncompiled_scanner_equals_float(monkeypatch: pytest.MonkeyPatch) -> None:
    body = _body(HARD_NUMBERS)
    expected = [_bits(float(x)) for x in HARD_NUMBERS]
    compiled = parse_intraday_json(body)
    monkeypatch.setattr(eodhd_format, "_scan", _py_scan())
    uncompiled = parse_intraday_json(body)
    for df in (compiled, uncompiled):
        for col in ("open", "high", "low", "close", "volume"):
            got = [_bits(x) for x in df[col].tolist()]
            bad = [(t, g, e) for t, g, e in zip(HARD_NUMBERS, got, expected, strict=True) if g != e]
            assert not bad, f"{col}: {bad[:5]}"
    pd.testing.assert_frame_equal(uncompiled, compiled)


json_number = st.from_regex(
    r"-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,24})?([eE][+-]?[0-9]{1,4})?", fullmatch=True
)


@settings(max_examples=100, deadline=None)
@given(st.lists(json_number, min_size=1, max_size=20))
def test_scanner_uncompiled_agrees_on_any_json_number(numbers: list[str]) -> None:
    _assert_scanners_agree(numbers)
    body = _body(numbers)
    _, _, vals, slow = _run_scan(_py_scan(), body)
    for r, f, s, e in slow.tolist():  # what parse_intraday_json hands to float()
        vals[f, r] = float(body[s:e])
    for k, x in enumerate(numbers):
        assert {_bits(v) for v in vals[:, k].tolist()} == {_bits(float(x))}, x


# -- full-precision prices (17 significant digits): compiled, exact, no float() ---------


def _full_precision_numbers(seed: int, n: int) -> list[str]:
    """Prices as repr writes them (16-17 significant digits), 1e-6 to 1e7, plus random
    doubles of any magnitude and 16-19 digit mantissas over the whole exponent range."""
    rng = np.random.default_rng(seed)
    prices = np.exp(rng.uniform(np.log(1e-6), np.log(1e7), n)) * (1 + rng.random(n) * 1e-9)
    anything = rng.integers(0, 0x7FF0000000000000, n, dtype=np.int64).view(np.float64)
    pick = random.Random(seed)
    sizes = rng.integers(16, 20, n).tolist()
    mantissas = [str(pick.randrange(10 ** (d - 1), 10**d)) for d in sizes]
    exponents = rng.integers(-345, 312, n)
    return [
        *(repr(float(x)) for x in prices),
        *(repr(float(x)) for x in anything),
        *(f"{m}e{e}" for m, e in zip(mantissas, exponents, strict=True)),
    ]


def test_full_precision_numbers_convert_in_the_scanner_exactly() -> None:
    """17-digit prices are no longer handed to float() (they were: ~5 s per 1M bars
    through the careful parser); every one equals float(text) and json.loads."""
    numbers = _full_precision_numbers(21, 4000)
    body = _body(numbers)
    (code, rows, n_slow), _, vals, _ = _run_scan(eodhd_format._scan, body)
    assert code == eodhd_format._OK and rows == len(numbers)
    assert n_slow == 0
    expected = np.array([float(x) for x in numbers])
    loaded = np.array([row["open"] for row in json.loads(body)], dtype=np.float64)
    assert expected.tobytes() == loaded.tobytes()
    for f in range(5):
        assert vals[f].tobytes() == expected.tobytes()
    parsed = parse_intraday_json(body)
    for col in ("open", "high", "low", "close", "volume"):
        assert parsed[col].to_numpy().tobytes() == expected.tobytes(), col


def test_full_precision_uncompiled_scanner_agrees() -> None:
    _assert_scanners_agree(_full_precision_numbers(5, 150))


def test_ties_and_near_ties_round_to_even_like_float() -> None:
    """Decimal texts exactly halfway between two doubles (and one digit either side),
    with up to 19 significant digits: the Eisel-Lemire tie rule."""
    from decimal import Decimal, localcontext

    rng = np.random.default_rng(8)
    numbers: list[str] = []
    with localcontext() as ctx:
        ctx.prec = 60
        for x in np.exp(rng.uniform(np.log(2.0**44), np.log(1e18), 400)):
            mid = (Decimal(float(x)) + Decimal(float(np.nextafter(x, np.inf)))) / 2
            text = format(mid.normalize(), "f")
            digits = len(text.replace(".", "").lstrip("0"))
            if digits > 19:
                continue
            last = Decimal(1).scaleb(mid.as_tuple().exponent)
            numbers += [text, format(mid - last, "f"), format(mid + last, "f")]
    numbers += ["9007199254740993", "9007199254740995", "18014398509481989"]
    assert len(numbers) > 100
    body = _body(numbers)
    (code, _, n_slow), _, vals, _ = _run_scan(eodhd_format._scan, body)
    assert code == eodhd_format._OK and n_slow == 0
    assert vals[0].tobytes() == np.array([float(x) for x in numbers]).tobytes()
    _assert_scanners_agree(numbers[:60])


def test_many_long_numbers_are_converted_in_bulk_exactly() -> None:
    """More than 19 digits: handed to float() semantics in bulk (orjson, or float()
    one by one when orjson refuses a text, e.g. a 100-digit integer)."""
    rng = np.random.default_rng(4)
    numbers = [f"{int(rng.integers(1, 10**9))}{'3' * 15}.{'6' * 9}" for _ in range(300)]
    numbers += ["7" * 100, "1" + "0" * 40, "0." + "1" * 30]
    parsed = parse_intraday_json(_body(numbers))
    expected = np.array([float(x) for x in numbers])
    for col in ("open", "close", "volume"):
        assert parsed[col].to_numpy().tobytes() == expected.tobytes(), col
    (code, _, n_slow), _, _, _ = _run_scan(eodhd_format._scan, _body(numbers))
    assert code == eodhd_format._OK and n_slow == 5 * len(numbers)


def test_parse_dtypes_and_empty() -> None:
    for body in (b"[]", b" [ ]\n", b"[\n]"):
        df = parse_intraday_json(body)
        assert list(df.columns) == list(BAR_COLUMNS) and len(df) == 0
        assert str(df["ts"].dtype) == TS_DTYPE
        assert all(df[c].dtype == np.float64 for c in BAR_COLUMNS[1:])
        assert isinstance(df.index, pd.RangeIndex)


def test_nulls_stay_nan_and_nothing_is_dropped() -> None:
    body = (
        b'[{"timestamp": 60, "gmtoffset": 0, "datetime": "1970-01-01 00:01:00", '
        b'"open": 1.1, "high": 1.2, "low": 1.0, "close": null, "volume": null},\n'
        b' {"timestamp": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5},'
        b' {"timestamp": 0, "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 7}]'
    )
    df = parse_intraday_json(body)
    assert len(df) == 3  # unsorted, duplicated: kept as received for the validator
    assert df["ts"].astype("int64").tolist() == [60_000_000, 0, 0]
    assert math.isnan(df.loc[0, "close"]) and math.isnan(df.loc[0, "volume"])
    assert math.isnan(df.loc[1, "volume"]) and df.loc[2, "volume"] == 7.0
    assert df.loc[0, "open"] == 1.1


def test_pretty_printed_reordered_and_extra_keys() -> None:
    body = json.dumps(
        [
            {
                "close": "146.2",
                "volume": 10,
                "extra": {"nested": [1, 2]},
                "low": 145.9,
                "high": 146.3,
                "open": 146.1,
                "timestamp": 1627896900,
            }
        ],
        indent=2,
    ).encode()
    df = parse_intraday_json(body)
    assert df.iloc[0, 1:].tolist() == [146.1, 146.3, 145.9, 146.2, 10.0]


def test_fast_and_careful_parsers_agree() -> None:
    bars = MARKET.fetch_bars("BTC-USD.CC", "5m", utc(2024, 5, 1), utc(2024, 5, 8))
    body = render_intraday_json(bars)
    pd.testing.assert_frame_equal(parse_intraday_json(body), _parse_careful(body))


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (b"", "empty response body"),
        (b'[{"timestamp":1627896900,"gmtoffset":0,"open":146.1,"hi', "truncated JSON"),
        (b"[{]", "invalid JSON"),
        (
            b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "HTML error page instead of JSON.*502 Bad Gateway",
        ),
        (b"<!DOCTYPE html>\n<html><body>oops</body></html>", "HTML error page instead of JSON"),
        (b'{"error": "Ticker not found"}', "object instead of an array.*Ticker not found"),
        (b'{"message": "Unauthenticated"}', "object instead of an array.*Unauthenticated"),
        (b'"just a string"', "str instead of an array"),
        (b"[1, 2]", "bar 0 is a JSON int"),
        (b'[{"open":1,"high":1,"low":1,"close":1}]', "bar 0 has no timestamp field"),
        (b'[{"timestamp":1,"open":1,"high":1,"low":1}]', "bar 0 has no close field"),
        (b'[{"timestamp":null,"open":1,"high":1,"low":1,"close":1}]', "bar 0 has timestamp"),
        (b'[{"timestamp":1.5,"open":1,"high":1,"low":1,"close":1}]', "not whole seconds"),
        (b'[{"timestamp":1,"open":"abc","high":1,"low":1,"close":1}]', "bar 0 has open"),
        (b'[{"timestamp":1,"open":true,"high":1,"low":1,"close":1}]', "bar 0 has open"),
        (b"\xff\xfe[]", "not UTF-8 JSON"),
        # past orjson's depth limit (1024) json.loads takes it, and raises RecursionError
        # past the interpreter's (3.11: ~1000 frames; 3.13: its C limit, ~10 000)
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply to be bars"),
    ],
)
def test_malformed_bodies_raise_clear_errors(body: bytes, match: str) -> None:
    with pytest.raises(DataFormatError, match=match):
        parse_intraday_json(body)


def test_error_messages_are_short_and_redacted() -> None:
    register_secret("sekrit-token-123")
    body = b'{"error": "bad token sekrit-token-123 for url ?api_token=other-value", "x": "'
    body += b"A" * 5000 + b'"}'
    with pytest.raises(DataFormatError) as info:
        parse_intraday_json(body)
    text = str(info.value)
    assert "sekrit-token-123" not in text and "other-value" not in text
    assert "bad token" in text
    assert len(text) < 300
    huge = b"[" + b'{"timestamp":1,"open":1,"high":1,"low":1,"close":1},' * 1000
    with pytest.raises(DataFormatError) as info:
        parse_intraday_json(huge)
    assert len(str(info.value)) < 300


def test_careful_parser_decodes_full_precision_and_what_orjson_refuses() -> None:
    """The careful parser (here: prices as strings, which the scanner leaves to it)
    gives json.loads' exact values; a body orjson refuses (an integer over 64 bits)
    still parses, through the standard library."""
    numbers = _full_precision_numbers(3, 50)
    rows = [
        f'{{"timestamp":{60 * k},"open":"{x}","high":{x},"low":{x},"close":{x}}}'
        for k, x in enumerate(numbers)
    ]
    body = ("[" + ",".join(rows) + "]").encode()
    parsed = parse_intraday_json(body)
    expected = np.array([float(x) for x in numbers])
    for col in ("open", "high", "low", "close"):
        assert parsed[col].to_numpy().tobytes() == expected.tobytes(), col
    big = b'[{"timestamp":60,"open":"1","high":' + b"9" * 30 + b',"low":1,"close":1}]'
    assert parse_intraday_json(big)["high"].tolist() == [float("9" * 30)]


# -- a large body is scanned in parts, one thread each: the single scan's result --------


def _parts_body() -> bytes:
    """Bars in every shape the scanner takes: compact and pretty-printed, reordered and
    extra keys, nulls, numbers left to float() (over 19 digits) early and late, and
    strings holding what looks like an object boundary ('},{', '}, {')."""
    rows = []
    for k in range(24):
        x = f"{100 + k}.{k}123456789012" if k % 5 else f"{7 * (k + 1)}{'1' * 20}.5"
        note = ['"},{\\"timestamp\\":1,', '"}, {', '"x}\\n,\\n{', '"plain'][k % 4]
        row = (
            f'"timestamp":{60 * k},"gmtoffset":0,"datetime":"1970-01-01 00:{k:02d}:00",'
            f'"open":{x},"high":{x},"low":{x},"close":{x if k != 7 else "null"},'
            f'"volume":{k if k != 3 else "null"}}}'
        )
        if k % 3 == 1:
            row = row.replace(",", ",\n  ").replace(":", " : ")
        rows.append(f'{{"note":{note}",' + row if k % 2 else "{" + row[:-1] + f',"n":{note}"}}')
    return ("[" + ",".join(rows[:8]) + " ,\n " + ",".join(rows[8:]) + "\n]").encode()


def _single_scan(body: bytes) -> tuple[np.ndarray, np.ndarray] | None:
    return eodhd_format._scan_parts(body, [0])


def _assert_same_scan(got: tuple[np.ndarray, np.ndarray] | None, want: object) -> None:
    assert want is not None and got is not None
    assert got[0].tobytes() == want[0].tobytes()  # type: ignore[index]
    assert got[1].tobytes() == want[1].tobytes()  # type: ignore[index]


def test_scan_in_parts_equals_the_single_scan_wherever_the_parts_begin() -> None:
    """Two and three parts beginning anywhere (inside keys, strings holding '},{',
    numbers, whitespace; at object starts): the same arrays bit for bit."""
    body = _parts_body()
    want = _single_scan(body)
    assert want is not None and len(want[0]) == 24
    assert want[0].tolist() == [60_000_000 * k for k in range(24)]
    n = len(body)
    step = 1 if _py_scan() is not eodhd_format._scan else 7  # uncompiled: a sample
    for a in range(1, n, step):
        _assert_same_scan(eodhd_format._scan_parts(body, [0, a]), want)
    rng = random.Random(3)
    for _ in range(300 if step == 1 else 40):
        a, b = sorted(rng.sample(range(1, n), 2))
        _assert_same_scan(eodhd_format._scan_parts(body, [0, a, b]), want)
    starts = [i + 1 for i in range(n - 2) if body[i : i + 2] == b",{"]
    _assert_same_scan(eodhd_format._scan_parts(body, [0, *starts]), want)


def test_split_points_are_object_starts() -> None:
    body = _parts_body()
    for parts in range(2, 9):
        starts = eodhd_format._split_points(body, parts)
        assert starts[0] == 0 and starts == sorted(set(starts))
        for s in starts[1:]:
            assert body[s : s + 1] == b"{"
            assert body[:s].rstrip()[-1:] == b"," and body[:s].rstrip()[:-1].rstrip()[-1:] == b"}"
        _assert_same_scan(eodhd_format._scan_parts(body, starts), _single_scan(body))
    # inside the strings: found, and the part before tells (the body scans whole)
    tricky = b'[{"timestamp":0,"open":1,"high":1,"low":1,"close":1,"s":"' + b"},{" * 50 + b'"}]'
    starts = eodhd_format._split_points(tricky, 2)
    assert len(starts) == 2
    _assert_same_scan(eodhd_format._scan_parts(tricky, starts), _single_scan(tricky))
    assert eodhd_format._split_points(b"[" + b" " * 1000 + b"]", 4) == [0]  # none to find


def test_parse_in_parts_equals_one_part(monkeypatch: pytest.MonkeyPatch) -> None:
    bars = MARKET.fetch_bars("BTC-USD.CC", "1m", utc(2024, 5, 1), utc(2024, 5, 2))
    body = render_intraday_json(bars)
    one = parse_intraday_json(body)
    monkeypatch.setattr(eodhd_format, "_PART_MIN_BYTES", len(body) // 3)
    monkeypatch.setattr(eodhd_format, "_parse_threads", lambda size: 3)
    assert len(eodhd_format._split_points(body, 3)) == 3
    parts = parse_intraday_json(body)
    pd.testing.assert_frame_equal(parts, one)
    pd.testing.assert_frame_equal(parts, bars)
    for col in BAR_COLUMNS[1:]:
        assert parts[col].to_numpy().tobytes() == bars[col].to_numpy().tobytes()
    body = _parts_body()
    pd.testing.assert_frame_equal(parse_intraday_json(body), _parse_careful(body))


def test_parse_threads_by_size(monkeypatch: pytest.MonkeyPatch) -> None:
    assert eodhd_format._parse_threads(1000) == 1
    monkeypatch.setattr(eodhd_format.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5})
    big = eodhd_format._PART_MIN_BYTES
    assert eodhd_format._parse_threads(big) == 1
    assert eodhd_format._parse_threads(2 * big) == 2
    assert eodhd_format._parse_threads(100 * big) == eodhd_format._MAX_PARTS
    monkeypatch.setattr(eodhd_format.os, "sched_getaffinity", lambda pid: {0})
    assert eodhd_format._parse_threads(100 * big) == 1


def _damaged(body: bytes, seed: int) -> list[bytes]:
    """``body`` broken in its second half: a byte changed, dropped or doubled, cut short."""
    rng = random.Random(seed)
    out = []
    for _ in range(40):
        p = rng.randrange(len(body) // 2, len(body))
        c = bytes([rng.choice(b'{}[],:"0.e-x \\')])
        out += [body[:p] + c + body[p + 1 :], body[:p] + body[p + 1 :], body[:p] + c + body[p:]]
    out += [body[: len(body) * 3 // 4], body + b",", body[:-1] + b",]", body + b"x"]
    return out


def test_malformed_body_in_parts_fails_as_in_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """Damage anywhere: the parts give the single scan's answer (the same frame, or the
    same one-line error from the careful parser); never a silent partial result."""
    bars = MARKET.fetch_bars("BTC-USD.CC", "5m", utc(2024, 5, 1), utc(2024, 5, 2))
    body = render_intraday_json(bars)
    monkeypatch.setattr(eodhd_format, "_PART_MIN_BYTES", 1)
    for bad in _damaged(body, 5)[:: 1 if _py_scan() is not eodhd_format._scan else 6]:
        want = _single_scan(bad)
        for parts in (2, 3):
            got = eodhd_format._scan_parts(bad, eodhd_format._split_points(bad, parts))
            if want is None:
                assert got is None
            else:
                _assert_same_scan(got, want)
        monkeypatch.setattr(eodhd_format, "_parse_threads", lambda size: 1)
        try:
            one: pd.DataFrame | str = parse_intraday_json(bad)
        except DataFormatError as exc:
            one = str(exc)
        monkeypatch.setattr(eodhd_format, "_parse_threads", lambda size: 2)
        try:
            two: pd.DataFrame | str = parse_intraday_json(bad)
        except DataFormatError as exc:
            two = str(exc)
        if isinstance(one, str):
            assert two == one and "\n" not in one
        else:
            assert isinstance(two, pd.DataFrame)
            pd.testing.assert_frame_equal(two, one)


def test_parts_leave_as_many_numbers_to_float_as_one_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over _MAX_SLOW numbers for float() in the body: the careful parser, in parts too
    (each part alone stays under it)."""
    body = _parts_body()
    n_slow = _run_scan(eodhd_format._scan, body)[0][2]
    assert n_slow == 20  # 5 bars of 4 prices over 19 digits
    starts = eodhd_format._split_points(body, 2)
    assert len(starts) == 2
    monkeypatch.setattr(eodhd_format, "_MAX_SLOW", n_slow)
    _assert_same_scan(eodhd_format._scan_parts(body, starts), _single_scan(body))
    monkeypatch.setattr(eodhd_format, "_MAX_SLOW", n_slow - 1)
    assert _single_scan(body) is None
    assert eodhd_format._scan_parts(body, starts) is None

"""EODHD WebSocket wire format: render_tick / parse_frame."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hedgeflow.errors import InvalidInputError
from hedgeflow.sources.tick import Tick
from hedgeflow.sources.ws_format import (
    BAD_REASONS,
    BadFrame,
    StatusFrame,
    parse_frame,
    render_tick,
    symbol_map,
)

SYMBOLS = symbol_map(["AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"])
T = 1725198451165  # 2024-09-01 13:47:31.165 UTC, in ms

# The documented examples (EODHD.md), verbatim.
US = '{"s": "AAPL", "p": 227.31, "v": 100, "c": [12, 37], "dp": false, "ms": "market", "t": 1725198451165}'  # noqa: E501
US_QUOTE = '{"s": "AAPL", "ap": 227.32, "as": 3, "bp": 227.30, "bs": 5, "t": 1725198451165}'
FOREX = '{"s": "EURUSD", "a": 1.10523, "b": 1.10519, "dc": "0.0281", "dd": "0.0003", "ppms": false, "t": 1725198451000}'  # noqa: E501
CRYPTO = '{"s": "BTC-USD", "p": "63012.5", "q": "0.0041", "dc": "1.23", "dd": "765.1", "t": 1725198451165}'  # noqa: E501


def parse(feed: str, frame: str | bytes | dict) -> Tick | StatusFrame | BadFrame:
    raw = json.dumps(frame) if isinstance(frame, dict) else frame
    return parse_frame(feed, raw, SYMBOLS)


def test_documented_us_trade() -> None:
    tick = parse("us", US)
    assert isinstance(tick, Tick)
    assert tick.key() == ("AAPL.US", T, 227.31, 100.0, None, None)
    assert tick.feed == "us"


def test_documented_us_quote_is_priced_at_the_mid() -> None:
    tick = parse("us-quote", US_QUOTE)
    assert isinstance(tick, Tick)
    assert (tick.bid, tick.ask) == (227.30, 227.32)
    assert tick.price == (227.32 + 227.30) / 2
    assert math.isnan(tick.size)


def test_documented_forex_quote_is_not_dropped() -> None:
    # The article's bug: forex frames carry a/b and no p, so every one was dropped.
    tick = parse("forex", FOREX)
    assert isinstance(tick, Tick)
    assert tick.symbol == "EURUSD.FOREX"
    assert tick.price == (1.10523 + 1.10519) / 2
    assert (tick.bid, tick.ask) == (1.10519, 1.10523)
    assert tick.spread == pytest.approx(0.00004)
    assert math.isnan(tick.size)
    assert tick.ts_ms == 1725198451000


def test_documented_crypto_with_string_numbers() -> None:
    tick = parse("crypto", CRYPTO)
    assert isinstance(tick, Tick)
    assert tick.key() == ("BTC-USD.CC", T, 63012.5, 0.0041, None, None)


def test_t_is_milliseconds_and_seconds_are_rejected_not_rescaled() -> None:
    # The article's bug: t was parsed as seconds.
    tick = parse("us", US)
    assert isinstance(tick, Tick) and tick.ts_ms == T
    as_seconds = json.loads(US) | {"t": T // 1000}
    assert parse("us", as_seconds) == BadFrame("time_in_seconds", json.dumps(as_seconds))
    micro = json.loads(US) | {"t": T * 1000}
    assert isinstance(parse("us", micro), BadFrame)
    assert parse("us", micro).reason == "implausible_time"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("feed", "frame"),
    [
        ("us", {"s": "AAPL", "p": "227.31", "v": "100", "t": str(T)}),
        ("us", {"s": "AAPL", "p": 227.31, "v": 100, "t": float(T)}),
        ("forex", {"s": "EURUSD", "a": "1.10523", "b": "1.10519", "t": T}),
        ("us-quote", {"s": "AAPL", "ap": "227.32", "bp": 227.30, "t": T}),
        ("crypto", {"s": "BTC-USD", "p": 63012.5, "q": 0.0041, "t": T}),
        ("crypto", {"s": "btc-usd", "p": 63012.5, "q": 0.0041, "t": T}),
    ],
)
def test_numbers_may_be_strings(feed: str, frame: dict) -> None:
    tick = parse(feed, frame)
    assert isinstance(tick, Tick), tick
    assert tick.ts_ms == T


def test_missing_optional_fields() -> None:
    tick = parse("us", {"s": "AAPL", "p": 227.31, "t": T})  # no v, c, dp, ms
    assert isinstance(tick, Tick) and math.isnan(tick.size)
    tick = parse("crypto", {"s": "BTC-USD", "p": "1.5", "q": None, "t": T})
    assert isinstance(tick, Tick) and math.isnan(tick.size)
    tick = parse("forex", {"s": "EURUSD", "a": 1.2, "b": 1.2, "t": T})  # no dc/dd/ppms
    assert isinstance(tick, Tick) and tick.price == 1.2


@pytest.mark.parametrize(
    ("raw", "code", "is_error", "auth"),
    [
        ('{"status_code": 200, "message": "Authorized"}', 200, False, False),
        ('{"status_code": 401, "message": "Unauthorized"}', 401, True, True),
        ('{"status_code": "403", "message": "Forbidden"}', 403, True, True),
        ('{"status_code": 500, "message": "Too many symbols"}', 500, True, False),
        ('{"error": "Invalid API key"}', None, True, True),
        ('{"message": "Subscribed"}', None, False, False),
    ],
)
def test_status_and_error_frames(raw: str, code: int | None, is_error: bool, auth: bool) -> None:
    for feed in ("us", "us-quote", "forex", "crypto"):
        status = parse_frame(feed, raw, SYMBOLS)
        assert isinstance(status, StatusFrame)
        assert (status.code, status.is_error, status.is_auth_failure) == (code, is_error, auth)


MALFORMED: list[tuple[str, str | bytes, str]] = [
    ("us", '{"s": "AAPL", "p": 227.31, "t": 17251984', "not_json"),
    ("us", "<html><body>502 Bad Gateway</body></html>", "not_json"),
    ("us", "", "not_json"),
    ("us", b"\xff\xfe\x00garbage", "not_json"),
    ("us", "[1, 2, 3]", "not_object"),
    ("us", '"AAPL"', "not_object"),
    ("us", "null", "not_object"),
    ("us", '{"p": 227.31, "t": 1725198451165}', "missing_symbol"),
    ("us", '{"s": ["AAPL"], "p": 227.31, "t": 1725198451165}', "invalid_symbol"),
    ("us", '{"s": "MSFT", "p": 227.31, "t": 1725198451165}', "unknown_symbol"),
    ("us", '{"s": "AAPL", "v": 100, "t": 1725198451165}', "missing_price"),
    ("us", '{"s": "AAPL", "p": "abc", "t": 1725198451165}', "invalid_price"),
    ("us", '{"s": "AAPL", "p": null, "t": 1725198451165}', "invalid_price"),
    ("us", '{"s": "AAPL", "p": true, "t": 1725198451165}', "invalid_price"),
    ("us", '{"s": "AAPL", "p": [1], "t": 1725198451165}', "invalid_price"),
    ("us", '{"s": "AAPL", "p": NaN, "t": 1725198451165}', "non_finite_price"),
    ("us", '{"s": "AAPL", "p": "nan", "t": 1725198451165}', "non_finite_price"),
    ("us", '{"s": "AAPL", "p": Infinity, "t": 1725198451165}', "non_finite_price"),
    ("us", '{"s": "AAPL", "p": 1e999, "t": 1725198451165}', "non_finite_price"),
    ("us", '{"s": "AAPL", "p": 0, "t": 1725198451165}', "non_positive_price"),
    ("us", '{"s": "AAPL", "p": -227.31, "t": 1725198451165}', "non_positive_price"),
    ("us", '{"s": "AAPL", "p": 227.31, "v": -5, "t": 1725198451165}', "invalid_size"),
    ("us", '{"s": "AAPL", "p": 227.31, "v": "lots", "t": 1725198451165}', "invalid_size"),
    ("us", '{"s": "AAPL", "p": 227.31, "v": 100}', "missing_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": null}', "invalid_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": "yesterday"}', "invalid_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": 1725198451165.5}', "invalid_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": true}', "invalid_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": 1725198451}', "time_in_seconds"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": "1725198451"}', "time_in_seconds"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": 1725198451165000}', "implausible_time"),
    ("us", '{"s": "AAPL", "p": 227.31, "t": -1}', "implausible_time"),
    ("forex", '{"s": "EURUSD", "p": 1.1, "t": 1725198451000}', "missing_price"),
    ("forex", '{"s": "EURUSD", "a": 1.1, "t": 1725198451000}', "missing_price"),
    ("forex", '{"s": "EURUSD", "a": "abc", "b": 1.1, "t": 1725198451000}', "invalid_price"),
    ("forex", '{"s": "EURUSD", "a": 1.1, "b": -1.1, "t": 1725198451000}', "non_positive_price"),
    ("forex", '{"s": "EURUSD", "a": 1.1, "b": 1.2, "t": 1725198451000}', "crossed_quote"),
    ("forex", '{"s": "EURUSD", "a": 1e308, "b": 1e308, "t": 1725198451000}', "non_finite_price"),
    ("us-quote", '{"s": "AAPL", "ap": 227.30, "bp": 227.32, "t": 1725198451165}', "crossed_quote"),
    ("us-quote", '{"s": "AAPL", "p": 227.31, "t": 1725198451165}', "missing_price"),
    ("crypto", '{"s": "BTC-USD", "p": "63,012.5", "t": 1725198451165}', "invalid_price"),
    ("crypto", '{"s": "BTC-USD", "p": "-1", "t": 1725198451165}', "non_positive_price"),
    ("crypto", '{"s": "BTC-USD", "p": "1.5", "q": "x", "t": 1725198451165}', "invalid_size"),
]


@pytest.mark.parametrize(("feed", "raw", "reason"), MALFORMED)
def test_each_malformed_kind_is_a_bad_frame(feed: str, raw: str | bytes, reason: str) -> None:
    result = parse_frame(feed, raw, SYMBOLS)
    assert isinstance(result, BadFrame), result
    assert result.reason == reason
    assert result.reason in BAD_REASONS
    assert len(result.detail) <= 200


def test_unknown_feed_is_a_programming_error() -> None:
    with pytest.raises(InvalidInputError):
        parse_frame("options", US, SYMBOLS)
    with pytest.raises(InvalidInputError):
        render_tick("options", Tick("AAPL.US", T, 1.0))


def test_render_matches_the_documented_field_order() -> None:
    trade = Tick("AAPL.US", T, 227.31, 100.0, feed="us")
    assert list(json.loads(render_tick("us", trade))) == ["s", "p", "v", "c", "dp", "ms", "t"]
    quote = Tick("AAPL.US", T, 227.31, bid=227.30, ask=227.32)
    assert list(json.loads(render_tick("us-quote", quote))) == ["s", "ap", "as", "bp", "bs", "t"]
    fx = Tick("EURUSD.FOREX", T, 1.10521, bid=1.10519, ask=1.10523)
    frame = json.loads(render_tick("forex", fx))
    assert list(frame) == ["s", "a", "b", "dc", "dd", "ppms", "t"]
    assert (frame["s"], frame["a"], frame["b"], frame["t"]) == ("EURUSD", 1.10523, 1.10519, T)
    coin = Tick("BTC-USD.CC", T, 63012.5, 0.0041)
    frame = json.loads(render_tick("crypto", coin))
    assert list(frame) == ["s", "p", "q", "dc", "dd", "t"]
    assert (frame["p"], frame["q"]) == ("63012.5", "0.0041")  # strings, as EODHD sends them
    assert json.loads(render_tick("us", trade))["v"] == 100  # an integer size stays an integer


def test_render_refuses_a_quote_without_bid_and_ask() -> None:
    with pytest.raises(InvalidInputError):
        render_tick("forex", Tick("EURUSD.FOREX", T, 1.1))


prices = st.floats(min_value=1e-6, max_value=1e7, allow_nan=False)
times = st.integers(min_value=946_684_800_000, max_value=4_102_444_799_999)
sizes = st.one_of(st.just(math.nan), st.integers(0, 10**6).map(float), st.floats(0, 1e6))


@settings(max_examples=200, deadline=None)
@given(price=prices, ts=times, size=sizes, spread=st.floats(0, 0.5))
def test_parse_inverts_render(price: float, ts: int, size: float, spread: float) -> None:
    for feed, symbol in (("us", "AAPL.US"), ("crypto", "BTC-USD.CC")):
        tick = Tick(symbol, ts, price, size, feed=feed)
        assert parse_frame(feed, render_tick(feed, tick), SYMBOLS).key() == tick.key()  # type: ignore[union-attr]
    bid, ask = price, price * (1 + spread)
    for feed, symbol in (("forex", "EURUSD.FOREX"), ("us-quote", "AAPL.US")):
        tick = Tick(symbol, ts, (ask + bid) / 2, bid=bid, ask=ask, feed=feed)
        assert parse_frame(feed, render_tick(feed, tick), SYMBOLS).key() == tick.key()  # type: ignore[union-attr]


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=8,
)
frames = st.one_of(
    st.binary(max_size=64),
    st.text(max_size=64),
    json_values.map(json.dumps),
    st.fixed_dictionaries(
        {"s": st.sampled_from(["AAPL", "EURUSD", "BTC-USD", "X"]) | json_values},
        optional={k: json_values | st.text(max_size=12) for k in ("p", "a", "b", "ap", "bp", "t")},
    ).map(json.dumps),
)


@settings(max_examples=400, deadline=None)
@given(raw=frames)
def test_any_frame_never_raises_and_never_gives_a_bad_price(raw: str | bytes) -> None:
    for feed in ("us", "us-quote", "forex", "crypto"):
        result = parse_frame(feed, raw, SYMBOLS)
        assert isinstance(result, Tick | StatusFrame | BadFrame)
        if isinstance(result, Tick):
            assert math.isfinite(result.price) and result.price > 0
            assert 946_684_800_000 <= result.ts_ms < 4_102_444_800_000
            assert not result.bid > result.ask
            assert result.symbol in SYMBOLS.values()


# -- orjson decodes the frames: the same results as the standard library's json ---------

ODD_FRAMES: list[str | bytes | bytearray] = [
    '{"s": "AAPL", "p": 227.31000000000001, "v": 100, "t": 1725198451165}',
    '{"s": "AAPL", "p": 0.30000000000000004, "v": 1.0000000000000002, "t": 1725198451165}',
    '{"s": "BTC-USD", "p": "63012.512345678912", "q": "0.0041000000000000000003", "t": 1'
    "725198451165}",
    '{"s": "EURUSD", "a": 1.1052300000000001, "b": 1.1051899999999999, "t": 1725198451000}',
    '{"s": "AAPL", "ap": 2.2250738585072011e-308, "bp": 5e-324, "t": 1725198451165}',
    '{"s": "AAPL", "p": 1.7976931348623157e308, "t": 1725198451165}',
    '{"s": "AAPL", "p": 1e400, "t": 1725198451165}',
    '{"s": "AAPL", "p": -1e400, "t": 1725198451165}',
    '{"s": "AAPL", "p": 1e-400, "t": 1725198451165}',
    '{"s": "AAPL", "p": NaN, "t": 1725198451165}',
    '{"s": "AAPL", "p": -Infinity, "t": 1725198451165}',
    '{"s": "AAPL", "p": 1180591620717411303424, "t": 1725198451165}',
    '{"s": "AAPL", "p": 227.31, "t": 1725198451165000000000000}',
    '{"s": "AAPL", "p": 227.31, "t": 1.725198451165e12}',
    '{"s": "AAPL", "p": 227.31, "t": 1725198451165.5}',
    '{"s": "AAPL", "p": -0.0, "t": 1725198451165}',
    '{"s": "AAPL", "p": 1, "p": 2, "t": 1725198451165}',
    '{"s": "\\ud800", "p": 227.31, "t": 1725198451165}',
    '{"s": "A\\u0041PL", "p": 227.31, "t": 1725198451165}',
    '  {"s": "AAPL", "p": 227.31, "t": 1725198451165}\n',
    '{"s": "AAPL", "p": 227.31, "t": 1725198451165} x',
    '\ufeff{"s": "AAPL", "p": 227.31, "t": 1725198451165}',
    b'\xef\xbb\xbf{"s": "AAPL", "p": 227.31, "t": 1725198451165}',
    '{"s": "AAPL", "p": 227.31, "t": 1725198451165}'.encode("utf-16"),
    bytearray(b'{"s": "BTC-USD", "p": 63012.51234567891, "q": 3, "t": 1725198451165}'),
    b'{"s": "AAPL", "p": 227.31, "t": \xff}',
    '{"status_code": 200, "message": "Authorized"}',
    "",
    "null",
    "1e5",
]


def _stdlib_results(monkeypatch: pytest.MonkeyPatch, frames: list) -> list[str]:
    from hedgeflow.sources import ws_format

    with monkeypatch.context() as m:
        m.setattr(ws_format, "_loads", json.loads)
        return [repr(parse_frame(f, raw, SYMBOLS)) for raw in frames for f in FEEDS]


FEEDS = ("us", "us-quote", "forex", "crypto")


def test_orjson_gives_the_stdlib_results_on_full_precision_and_odd_frames(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ours = [repr(parse_frame(f, raw, SYMBOLS)) for raw in ODD_FRAMES for f in FEEDS]
    assert ours == _stdlib_results(monkeypatch, ODD_FRAMES)
    # full precision is kept to the last bit
    tick = parse_frame("us", ODD_FRAMES[0], SYMBOLS)
    assert isinstance(tick, Tick) and tick.price == 227.31000000000001
    tick = parse_frame("crypto", ODD_FRAMES[2], SYMBOLS)
    assert isinstance(tick, Tick) and tick.price == float("63012.512345678912")
    # what orjson refuses still gets the stdlib's answer, not "not_json"
    nan = parse_frame("us", ODD_FRAMES[9], SYMBOLS)
    assert isinstance(nan, BadFrame) and nan.reason == "non_finite_price"
    big = parse_frame("us", ODD_FRAMES[11], SYMBOLS)
    assert isinstance(big, Tick) and big.price == float(2**70)


def test_nesting_past_orjsons_limit_is_not_json_and_does_not_crash() -> None:
    """JSON nested deeper than orjson's limit (1024) is refused as json.loads refuses it:
    "not_json", also as a trade's extra field. 300 000 levels (a 600 KB frame, under the
    websockets 1 MiB frame limit) overflowed the C stack of orjson < 3.9.15 and killed
    the process, so the parse runs in a child process: a crash fails this test."""
    code = (
        "from hedgeflow.sources.ws_format import parse_frame, symbol_map\n"
        "deep = '[' * 300_000 + ']' * 300_000\n"
        'trade = \'{"s": "AAPL", "p": 227.31, "t": 1725198451165, "x": \' + deep + \'}\'\n'
        "for raw in (deep, trade):\n"
        "    print(parse_frame('us', raw, symbol_map(['AAPL.US'])).reason)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.split() == ["not_json", "not_json"]
    # within the limit a nested extra field is decoded and ignored: the trade
    nested = "[" * 500 + "]" * 500
    trade = '{"s": "AAPL", "p": 227.31, "t": 1725198451165, "x": ' + nested + "}"
    tick = parse_frame("us", trade, SYMBOLS)
    assert isinstance(tick, Tick) and tick.price == 227.31


@settings(max_examples=100, deadline=None)
@given(raw=frames)
def test_orjson_gives_the_stdlib_results_on_any_frame(raw: str | bytes) -> None:
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert [repr(parse_frame(f, raw, SYMBOLS)) for f in FEEDS] == _stdlib_results(
            monkeypatch, [raw]
        )

import pytest

from hedgeflow.errors import InvalidInputError
from hedgeflow.market import asset_class_of, bars_per_year, normalize_symbol, ws_code


@pytest.mark.parametrize(
    ("raw", "canonical", "klass", "ws"),
    [
        ("AAPL.US", "AAPL.US", "stock", "AAPL"),
        ("eurusd.forex", "EURUSD.FOREX", "forex", "EURUSD"),
        (" BTC-USD.CC ", "BTC-USD.CC", "crypto", "BTC-USD"),
    ],
)
def test_symbols(raw: str, canonical: str, klass: str, ws: str) -> None:
    assert normalize_symbol(raw) == canonical
    assert asset_class_of(raw) == klass
    assert ws_code(raw) == ws


@pytest.mark.parametrize(
    "bad",
    [
        "../x",
        "A;DROP TABLE bars",
        "AAPL",
        "",
        "AAPL.US/..",
        "a b.US",
        "x" * 30 + ".US",
        "AAPL.U5",
        ".US",
    ],
)
def test_invalid_symbols_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="invalid symbol"):
        normalize_symbol(bad)


def test_bars_per_year_per_asset_class() -> None:
    assert bars_per_year("stock", 300) == 252 * 78
    assert bars_per_year("stock", 3600) == 252 * 7  # ceil(6.5)
    assert bars_per_year("forex", 300) == 260 * 288
    assert bars_per_year("crypto", 300) == 365 * 288

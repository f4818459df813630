"""Symbols, asset classes, intervals and annualisation: the market vocabulary."""

from __future__ import annotations

import math
import re
from typing import Literal

from hedgeflow.errors import InvalidInputError

AssetClass = Literal["stock", "forex", "crypto"]
ASSET_CLASSES: tuple[AssetClass, ...] = ("stock", "forex", "crypto")

Interval = Literal["1m", "5m", "1h"]
INTERVAL_SECONDS: dict[str, int] = {"1m": 60, "5m": 300, "1h": 3600}

# EODHD's maximum range per intraday request, in days (EODHD.md).
MAX_REQUEST_DAYS: dict[str, int] = {"1m": 120, "5m": 600, "1h": 7200}

# Exchange suffix -> asset class.
EXCHANGE_ASSET_CLASS: dict[str, AssetClass] = {"US": "stock", "FOREX": "forex", "CC": "crypto"}

# WebSocket feed per asset class (us-quote is an alternative feed for stocks).
WS_FEED: dict[AssetClass, str] = {"stock": "us", "forex": "forex", "crypto": "crypto"}

_SYMBOL_RE = re.compile(r"^[A-Z0-9][A-Z0-9_-]{0,23}\.[A-Z]{1,12}$")


def normalize_symbol(symbol: str) -> str:
    """Return the canonical ``CODE.EXCHANGE`` ticker or raise InvalidInputError.

    Only letters, digits, ``-`` and ``_`` in the code and letters in the exchange
    are accepted, so a symbol can never traverse paths or inject SQL.
    """
    if not isinstance(symbol, str):
        raise InvalidInputError(f"symbol must be a string, got {type(symbol).__name__}")
    candidate = symbol.strip().upper()
    if not _SYMBOL_RE.fullmatch(candidate):
        raise InvalidInputError(
            f"invalid symbol {symbol!r}: expected CODE.EXCHANGE such as AAPL.US, "
            "EURUSD.FOREX or BTC-USD.CC (letters, digits, '-' and '_' only)"
        )
    return candidate


def asset_class_of(symbol: str) -> AssetClass:
    """Asset class from the exchange suffix (US -> stock, FOREX -> forex, CC -> crypto)."""
    exchange = normalize_symbol(symbol).rsplit(".", 1)[1]
    try:
        return EXCHANGE_ASSET_CLASS[exchange]
    except KeyError:
        # Other exchanges are stock markets.
        return "stock"


def ws_code(symbol: str) -> str:
    """The WebSocket symbol: the code without the exchange suffix (AAPL, EURUSD, BTC-USD)."""
    return normalize_symbol(symbol).rsplit(".", 1)[0]


def validate_interval(interval: str) -> str:
    if interval not in INTERVAL_SECONDS:
        raise InvalidInputError(
            f"invalid interval {interval!r}: expected one of {', '.join(INTERVAL_SECONDS)}"
        )
    return interval


def interval_seconds(interval: str) -> int:
    return INTERVAL_SECONDS[validate_interval(interval)]


def validate_asset_class(asset_class: str) -> AssetClass:
    if asset_class not in ASSET_CLASSES:
        raise InvalidInputError(
            f"invalid asset class {asset_class!r}: expected one of {', '.join(ASSET_CLASSES)}"
        )
    return asset_class


def bars_per_year(asset_class: AssetClass, bar_seconds: float) -> float:
    """Annualisation factor N of DESIGN.md convention 6.

    stocks 252 x ceil(390 min / interval), forex 260 x 24 h / interval,
    crypto 365 x 24 h / interval.
    """
    if bar_seconds <= 0:
        raise InvalidInputError(f"bar spacing must be positive, got {bar_seconds}")
    if asset_class == "stock":
        return 252.0 * math.ceil(390 * 60 / bar_seconds)
    if asset_class == "forex":
        return 260.0 * 86400 / bar_seconds
    if asset_class == "crypto":
        return 365.0 * 86400 / bar_seconds
    raise InvalidInputError(f"unknown asset class {asset_class!r}")

"""A seeded, deterministic, tick-level synthetic market.

Every (seed, symbol) pair has a daily log-price anchor path from ``EPOCH`` and,
per UTC day, an intraday Brownian bridge between two anchors sampled at
Poisson tick times. Day ``d`` only depends on ``(seed, symbol, d)``, so the
ticks (and the bars aggregated from them) of any range are identical however
the range is split. Bars are aggregations of ticks, so a live feed that
streams the same ticks rebuilds identical bars.

Asset classes (``market.asset_class_of``):

* stock: regime-switching drift, ~2% daily vol, ticks only in the regular sessions of
  the exchange calendar (XNYS: 09:30-16:00 America/New_York, no ticks on holidays, early
  closes at 13:00; DESIGN.md convention 8), integer sizes;
* forex: mean reverting, ~0.5% daily vol, 24x5 (Sunday 22:00 to Friday 22:00 UTC),
  bid/ask quotes with price = mid, no sizes (bar volume NaN);
* crypto: fat-tailed (student-t) returns, ~3.5% daily vol, 24x7, fractional sizes.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import pandas as pd

from hedgeflow.errors import InvalidInputError
from hedgeflow.exchange_calendar import DEFAULT_CALENDAR, sessions
from hedgeflow.market import asset_class_of, interval_seconds, normalize_symbol
from hedgeflow.sources.base import bars_frame, check_request, empty_bars, epoch_us, to_utc
from hedgeflow.sources.synthetic_splits import divisors, split_schedule
from hedgeflow.splits import Split

EPOCH = date(2000, 1, 1)
HORIZON = date(2060, 1, 1)
MS_PER_DAY = 86_400_000
TICKS_PER_MINUTE = 4.0
VOLUME_DECIMALS = 8

_EPOCH_DAY = (EPOCH - date(1970, 1, 1)).days
_N_DAYS = (HORIZON - EPOCH).days


@dataclass(frozen=True)
class Ticks:
    """Ticks of one symbol, sorted by time (strictly increasing ms)."""

    ts_ms: np.ndarray  # int64 epoch milliseconds
    price: np.ndarray  # float64 (forex: the bid/ask mid)
    size: np.ndarray  # float64, NaN for forex
    bid: np.ndarray  # float64, NaN when not a quote
    ask: np.ndarray  # float64, NaN when not a quote

    def __len__(self) -> int:
        return len(self.ts_ms)


@dataclass(frozen=True)
class _Profile:
    asset_class: str
    level: float
    daily_vol: float
    kappa: float  # daily mean reversion of the log price towards log(level)
    decimals: int  # tick size = 10 ** -decimals
    t_dof: float  # student-t degrees of freedom; 0 = normal
    regime_drift: float  # std of the per-regime daily drift; 0 = no regimes


_KNOWN_LEVELS: dict[str, float] = {
    "EURUSD.FOREX": 1.10,
    "GBPUSD.FOREX": 1.27,
    "USDJPY.FOREX": 150.0,
    "AUDUSD.FOREX": 0.66,
    "BTC-USD.CC": 60_000.0,
    "ETH-USD.CC": 3_000.0,
}


def symbol_hash(symbol: str) -> int:
    """A stable 63-bit hash of a symbol (Python's hash() is salted per process)."""
    digest = hashlib.blake2b(symbol.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _profile(symbol: str) -> _Profile:
    cls = asset_class_of(symbol)
    h = symbol_hash(symbol)
    unit = (h % 1_000_003) / 1_000_003  # in [0, 1), per symbol
    if cls == "stock":
        level = 100.0 + 200.0 * unit
        return _Profile(cls, level, 0.015 + 0.01 * unit, 1 / 120, 2, 0.0, 0.0015)
    if cls == "forex":
        level = _KNOWN_LEVELS.get(symbol, 0.6 + 1.2 * unit)
        decimals = 3 if level > 20 else 5
        return _Profile(cls, level, 0.005, 1 / 60, decimals, 0.0, 0.0)
    level = _KNOWN_LEVELS.get(symbol, 0.5 * 10 ** (4 * unit))
    decimals = 2 if level >= 10 else 6
    return _Profile(cls, level, 0.035, 1 / 250, decimals, 4.0, 0.0)


def _day_windows(asset_class: str, days: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per UTC day number: the tick window [start, end) as ms offsets within the day."""
    dow = (days + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    lo = np.zeros(len(days), dtype="int64")
    hi = np.full(len(days), MS_PER_DAY, dtype="int64")
    if asset_class == "forex":
        lo[dow == 6] = 22 * 3_600_000
        hi[dow == 4] = 22 * 3_600_000
        hi[dow == 5] = 0
    elif asset_class == "stock":
        cal = sessions(DEFAULT_CALENDAR)
        for i, day in enumerate(days.tolist()):
            window = cal.on_day(int(day))
            if window is None:
                hi[i] = 0
                continue
            lo[i], hi[i] = window[0] - day * MS_PER_DAY, window[1] - day * MS_PER_DAY
    return lo, hi


def _day_fraction(asset_class: str, days: np.ndarray) -> np.ndarray:
    """Share of a full day's variance that each UTC day carries (0 on closed days)."""
    if asset_class == "stock":  # one whole session per trading day, whatever its length
        cal = sessions(DEFAULT_CALENDAR)
        return np.isin(days, cal.day).astype("float64")
    lo, hi = _day_windows(asset_class, days)
    return (hi - lo).clip(min=0) / MS_PER_DAY


class SyntheticMarket:
    """A deterministic market: ``SyntheticMarket(seed)``; same seed, same ticks and bars."""

    name = "synthetic"

    def __init__(self, seed: int = 7, *, splits: bool = True) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise InvalidInputError(f"seed must be an integer, got {seed!r}")
        self.seed = seed
        self.with_splits = splits  # False: the same market as if no stock ever split
        self._seed_key = seed % (1 << 64)
        self._anchors: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SyntheticMarket(seed={self.seed})"

    # -- daily anchors ---------------------------------------------------------------

    def _anchor_path(self, symbol: str) -> np.ndarray:
        """Log prices at 00:00 UTC of each day from EPOCH (length _N_DAYS + 1)."""
        path = self._anchors.get(symbol)
        if path is not None:
            return path
        prof = _profile(symbol)
        rng = np.random.default_rng([self._seed_key, symbol_hash(symbol), 0xA7C0])
        days = np.arange(_EPOCH_DAY, _EPOCH_DAY + _N_DAYS, dtype="int64")
        frac = _day_fraction(prof.asset_class, days)
        shocks = _shocks(rng, prof.t_dof, _N_DAYS) * prof.daily_vol * np.sqrt(frac)
        drift = np.zeros(_N_DAYS)
        if prof.regime_drift > 0:
            # Trend regimes: geometric lengths (mean ~40 days), a drift per regime.
            lengths = rng.geometric(1 / 40, size=_N_DAYS // 4 + 10)
            drifts = rng.normal(0.0, prof.regime_drift, size=len(lengths))
            drift = np.repeat(drifts, lengths)[:_N_DAYS]
        mu = np.log(prof.level)
        out = np.empty(_N_DAYS + 1)
        x = mu
        out[0] = x
        kappa = prof.kappa
        steps = zip(frac.tolist(), drift.tolist(), shocks.tolist(), strict=True)
        for i, (f, dr, e) in enumerate(steps):
            x = x + f * (dr + kappa * (mu - x)) + e
            out[i + 1] = x
        with self._lock:
            self._anchors.setdefault(symbol, out)
        return self._anchors[symbol]

    # -- splits -----------------------------------------------------------------------

    def split_schedule(self, symbol: str) -> tuple[Split, ...]:
        """Every split of ``symbol`` (stocks only), oldest first."""
        sym = normalize_symbol(symbol)
        if not self.with_splits or asset_class_of(sym) != "stock":
            return ()
        return split_schedule(self._seed_key, symbol_hash(sym))

    def fetch_splits(self, symbol: str, start: date, end: date) -> list[Split]:
        """The splits with ``start <= ex_date <= end`` (the vendor's ``/splits``)."""
        return [s for s in self.split_schedule(symbol) if start <= s.ex_date <= end]

    # -- ticks ------------------------------------------------------------------------

    def ticks(
        self, symbol: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
    ) -> Ticks:
        """All ticks with ``start <= time < end``."""
        sym = normalize_symbol(symbol)
        start_ms = -(-epoch_us(to_utc(start, "start")) // 1000)
        end_ms = -(-epoch_us(to_utc(end, "end")) // 1000)
        return self._ticks_ms(sym, start_ms, end_ms)

    def _ticks_ms(self, symbol: str, start_ms: int, end_ms: int) -> Ticks:
        first = start_ms // MS_PER_DAY
        last = -(-end_ms // MS_PER_DAY)  # exclusive
        if end_ms <= start_ms:
            first = last = 0
        elif first < _EPOCH_DAY or last > _EPOCH_DAY + _N_DAYS:
            raise InvalidInputError(
                f"the synthetic market covers {EPOCH} to {HORIZON}; "
                f"requested {pd.Timestamp(start_ms, unit='ms', tz='UTC')} "
                f"to {pd.Timestamp(end_ms, unit='ms', tz='UTC')}"
            )
        prof = _profile(symbol)
        anchors = self._anchor_path(symbol)
        days = np.arange(first, last, dtype="int64")
        lo, hi = _day_windows(prof.asset_class, days)
        parts = [
            self._day(symbol, prof, anchors, int(d), int(a), int(b))
            for d, a, b in zip(days, lo, hi, strict=True)
            if b > a
        ]
        if not parts:
            nothing = np.empty(0)
            return Ticks(np.empty(0, dtype="int64"), nothing, nothing, nothing, nothing)
        ts = np.concatenate([p[0] for p in parts])
        logp = np.concatenate([p[1] for p in parts])
        keep = slice(
            int(np.searchsorted(ts, start_ms, "left")), int(np.searchsorted(ts, end_ms, "left"))
        )
        ts, logp = ts[keep], logp[keep]
        extra = [np.concatenate([p[i] for p in parts])[keep] for i in (2, 3)]
        ticks = _finish(prof, ts, logp, *extra)
        k = divisors(self.split_schedule(symbol), ts)
        if k is None:
            return ticks
        # Not re-rounded to the tick: a split series adjusted back equals the market
        # that never split exactly (hedgeflow.splits), not only to half a tick.
        return Ticks(ts, ticks.price / k, ticks.size * k, ticks.bid, ticks.ask)

    def _day(
        self, symbol: str, prof: _Profile, anchors: np.ndarray, day: int, lo: int, hi: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One day's tick times, log mid prices and two uniform-ish extra draws."""
        rng = np.random.default_rng([self._seed_key, symbol_hash(symbol), day])
        span = hi - lo
        n = int(rng.poisson(TICKS_PER_MINUTE * span / 60_000))
        offsets = np.sort(rng.integers(0, span, size=n))
        offsets = offsets[np.concatenate(([True], offsets[1:] != offsets[:-1]))]
        n = len(offsets)
        u = offsets / span
        du = np.diff(u, prepend=0.0, append=1.0)
        steps = np.sqrt(du) * _shocks(rng, prof.t_dof, n + 1)
        walk = np.cumsum(steps)
        a = anchors[day - _EPOCH_DAY]
        b = anchors[day - _EPOCH_DAY + 1]
        sigma = prof.daily_vol * np.sqrt(span / MS_PER_DAY)
        logp = a + (b - a) * u + sigma * (walk[:-1] - u * walk[-1])
        extra1 = rng.standard_normal(n)
        extra2 = rng.random(n)
        return offsets + (day * MS_PER_DAY + lo), logp, extra1, extra2

    # -- extended hours ---------------------------------------------------------------

    def extended_ticks(
        self, symbol: str, start: datetime | pd.Timestamp, end: datetime | pd.Timestamp
    ) -> tuple[Ticks, np.ndarray]:
        """A stock's pre-market (04:00 ET to the open) and after-hours (the close to
        20:00 ET) trades on its session days with ``start <= time < end``, and their
        EODHD market status (``pre-market`` / ``after-hours``), as the US WebSocket
        feed streams them. They are never part of :meth:`ticks` or the bars (the
        regular session); forex and crypto have none."""
        sym = normalize_symbol(symbol)
        start_ms = -(-epoch_us(to_utc(start, "start")) // 1000)
        end_ms = -(-epoch_us(to_utc(end, "end")) // 1000)
        prof = _profile(sym)
        nothing = np.empty(0)
        none = (Ticks(np.empty(0, dtype="int64"), nothing, nothing, nothing, nothing), nothing)
        if prof.asset_class != "stock" or end_ms <= start_ms:
            return none
        cal = sessions(DEFAULT_CALENDAR)
        span = cal.between(start_ms - EXTENDED_AFTER_MS, end_ms + EXTENDED_BEFORE_MS)
        if span.stop <= span.start:
            return none
        first = int(cal.day[span.start])
        if first < _EPOCH_DAY or int(cal.day[span.stop - 1]) + 1 >= _EPOCH_DAY + _N_DAYS:
            raise InvalidInputError(f"the synthetic market covers {EPOCH} to {HORIZON}")
        anchors = self._anchor_path(sym)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, str]] = []
        for i in range(span.start, span.stop):
            day, opens, closes = int(cal.day[i]), int(cal.open_ms[i]), int(cal.close_ms[i])
            rng = np.random.default_rng([self._seed_key, symbol_hash(sym), day, 0xE7])
            for lo, hi, level, status in (
                (opens - EXTENDED_BEFORE_MS, opens, anchors[day - _EPOCH_DAY], "pre-market"),
                (closes, opens + EXTENDED_AFTER_MS, anchors[day - _EPOCH_DAY + 1], "after-hours"),
            ):
                n = int(rng.poisson(EXTENDED_TICKS_PER_MINUTE * (hi - lo) / 60_000))
                offsets = np.unique(rng.integers(0, hi - lo, size=n))
                walk = np.cumsum(rng.standard_normal(len(offsets))) / np.sqrt(max(len(offsets), 1))
                logp = level + 0.002 * walk
                size = np.maximum(1.0, np.round(np.exp(2.0 + rng.standard_normal(len(offsets)))))
                parts.append((offsets + lo, logp, size, status))
        ts = np.concatenate([p[0] for p in parts]).astype("int64")
        logp = np.concatenate([p[1] for p in parts])
        size = np.concatenate([p[2] for p in parts])
        statuses = np.concatenate([np.full(len(p[0]), p[3], dtype=object) for p in parts])
        keep = (ts >= start_ms) & (ts < end_ms)
        price = np.maximum(np.round(np.exp(logp[keep]), prof.decimals), 10.0**-prof.decimals)
        nan = np.full(int(keep.sum()), np.nan)
        return Ticks(ts[keep], price, size[keep], nan, nan.copy()), statuses[keep]

    # -- bars -------------------------------------------------------------------------

    def fetch_bars(
        self,
        symbol: str,
        interval: str,
        start: datetime | pd.Timestamp,
        end: datetime | pd.Timestamp,
    ) -> pd.DataFrame:
        """Start-stamped bars with ``start <= ts < end`` aggregated from the ticks."""
        sym, interval, start_ts, end_ts = check_request(symbol, interval, start, end)
        bar_ms = interval_seconds(interval) * 1000
        start_us, end_us = epoch_us(start_ts), epoch_us(end_ts)
        if end_us <= start_us:
            return empty_bars()
        # Whole bars: from the bar containing start to the bar containing end.
        lo_ms = (start_us // 1000) // bar_ms * bar_ms
        hi_ms = -(-(end_us // 1000 + 1) // bar_ms) * bar_ms
        # Ticks are made a month at a time (chunk edges are bar edges, so each bar's
        # ticks lie in one chunk): memory stays bounded however long the range.
        step = CHUNK_DAYS * MS_PER_DAY
        pieces = []
        for chunk_lo in range(lo_ms, hi_ms, step):
            t = self._ticks_ms(sym, chunk_lo, min(chunk_lo + step, hi_ms))
            pieces.append(_aggregate(t.ts_ms, t.price, t.size, bar_ms))
        cols = [np.concatenate(parts) for parts in zip(*pieces, strict=True)]
        lo_i, hi_i = np.searchsorted(cols[0], [start_us, end_us], "left")
        return bars_frame(*(c[lo_i:hi_i] for c in cols))


CHUNK_DAYS = 31
# Extended hours of a US stock session: pre-market from 04:00 ET (5.5 h before the
# 09:30 open), after-hours until 20:00 ET (10.5 h after the open), sparser than the session.
EXTENDED_BEFORE_MS = 19_800_000
EXTENDED_AFTER_MS = 37_800_000
EXTENDED_TICKS_PER_MINUTE = 0.5


def _shocks(rng: np.random.Generator, t_dof: float, n: int) -> np.ndarray:
    """Unit-variance shocks: normal, or student-t with ``t_dof`` degrees of freedom."""
    if t_dof <= 0:
        return rng.standard_normal(n)
    z = rng.standard_normal(n)
    chi2 = 2.0 * rng.standard_gamma(t_dof / 2, n)
    return z * np.sqrt((t_dof - 2) / chi2)


def _finish(
    prof: _Profile, ts: np.ndarray, logp: np.ndarray, extra1: np.ndarray, extra2: np.ndarray
) -> Ticks:
    tick = 10.0**-prof.decimals
    mid = np.maximum(np.round(np.exp(logp), prof.decimals), tick)
    n = len(ts)
    nan = np.full(n, np.nan)
    if prof.asset_class == "forex":
        half = np.floor(extra2 * 3) + 1  # half spread of 1-3 ticks
        bid = np.maximum(np.round(mid - half * tick, prof.decimals), tick)
        ask = np.round(mid + half * tick, prof.decimals)
        return Ticks(ts, (bid + ask) / 2, nan, bid, ask)
    if prof.asset_class == "stock":
        size = np.maximum(1.0, np.round(np.exp(4.0 + 1.0 * extra1)))
    else:
        size = np.maximum(1e-4, np.round(np.exp(-4.0 + 1.2 * extra1), 4))
    return Ticks(ts, mid, size, nan, nan.copy())


def aggregate_ticks(
    ts_ms: np.ndarray, price: np.ndarray, size: np.ndarray, bar_seconds: int
) -> pd.DataFrame:
    """Start-stamped bars from sorted ticks: open first, high max, low min, close last,
    volume sum rounded to 8 decimals (so summation order cannot matter; NaN sizes give
    NaN volume). Bars without ticks do not exist."""
    ts_ms = np.asarray(ts_ms, dtype="int64")
    price = np.asarray(price, dtype="float64")
    size = np.asarray(size, dtype="float64")
    n = len(ts_ms)
    if not len(price) == len(size) == n:
        raise InvalidInputError("ts_ms, price and size must have the same length")
    if n == 0:
        return empty_bars()
    if n > 1 and bool(np.any(ts_ms[1:] < ts_ms[:-1])):
        raise InvalidInputError("ticks must be sorted by time")
    return bars_frame(*_aggregate(ts_ms, price, size, int(bar_seconds) * 1000))


def _aggregate(
    ts_ms: np.ndarray, price: np.ndarray, size: np.ndarray, bar_ms: int
) -> tuple[np.ndarray, ...]:
    """(ts_us, open, high, low, close, volume) of sorted ticks."""
    n = len(ts_ms)
    if n == 0:
        empty = np.empty(0)
        return np.empty(0, dtype="int64"), empty, empty, empty, empty, empty
    ids = ts_ms // bar_ms
    starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
    ends = np.append(starts[1:] - 1, n - 1)
    volume = np.round(np.add.reduceat(size, starts), VOLUME_DECIMALS)
    return (
        ids[starts] * (bar_ms * 1000),
        price[starts],
        np.maximum.reduceat(price, starts),
        np.minimum.reduceat(price, starts),
        price[ends],
        volume,
    )

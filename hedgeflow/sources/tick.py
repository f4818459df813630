"""The tick: one trade or quote of one symbol, as the WebSocket sources produce it
(``MarketSource.stream``) and the live path carries it."""

from __future__ import annotations

import math
from dataclasses import dataclass

NAN = math.nan


@dataclass(frozen=True, slots=True)
class Tick:
    """One tick.

    * ``symbol``: canonical ``CODE.EXCHANGE`` (``AAPL.US``, ``EURUSD.FOREX``, ``BTC-USD.CC``);
    * ``ts_ms``: epoch milliseconds, UTC;
    * ``price``: the trade price; for quotes (forex, us-quote) the bid/ask mid;
    * ``size``: traded size, NaN when the feed has none (forex, quotes);
    * ``bid`` / ``ask``: the quote, NaN when the tick is a trade;
    * ``feed``: the EODHD feed it came from (``us``, ``us-quote``, ``forex``, ``crypto``);
    * ``ms``: the US trade feed's market status (``market``, ``pre-market``,
      ``after-hours``, ``closed``; EODHD.md), ``""`` when the feed has none.

    NaN fields never compare equal, so compare ticks with :meth:`key`, not ``==``.
    """

    symbol: str
    ts_ms: int
    price: float
    size: float = NAN
    bid: float = NAN
    ask: float = NAN
    feed: str = ""
    ms: str = ""

    @property
    def spread(self) -> float:
        """ask - bid (NaN for trades)."""
        return self.ask - self.bid

    def key(self) -> tuple[str, int, float, float | None, float | None, float | None]:
        """A hashable identity with NaN mapped to None, so equal ticks have equal keys."""
        return (
            self.symbol,
            self.ts_ms,
            self.price,
            None if self.size != self.size else self.size,
            None if self.bid != self.bid else self.bid,
            None if self.ask != self.ask else self.ask,
        )

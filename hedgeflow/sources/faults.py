"""Fault injection of the local simulators: one model for the REST and the WebSocket side.

Every fault the simulators can inject is named here, with what the simulator then does
instead of answering normally:

* :data:`FAULT_KINDS` - a REST request's faults (:class:`Simulator`): queued with
  :meth:`FaultController.inject` (FIFO, one per request), then drawn at a random rate
  (:meth:`FaultController.random`); :data:`TRANSIENT_KINDS` are those a client retries;
* :data:`WS_FAULT_KINDS` - a WebSocket stream's faults (:class:`WsSimulator`), set in a
  :class:`FaultPlan`: a dropped connection after a number of tick frames, duplicate,
  out-of-order and malformed frames at a rate per tick (a malformed frame is one of
  :data:`MALFORMED_KINDS`), silence.

Both sides validate rates with :func:`check_rate` and draw their random faults from a
seeded :class:`FaultDice`, so a seed replays the same faults.
"""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from hedgeflow.errors import InvalidInputError

__all__ = [
    "FAULT_KINDS",
    "MALFORMED_KINDS",
    "TRANSIENT_KINDS",
    "WS_FAULT_KINDS",
    "Fault",
    "FaultController",
    "FaultDice",
    "FaultPlan",
    "check_rate",
]

T = TypeVar("T")

# kind -> what the REST simulator does instead of answering normally
FAULT_KINDS: dict[str, str] = {
    "429": "HTTP 429 with a Retry-After header (seconds)",
    "500": "HTTP 500",
    "503": "HTTP 503",
    "timeout": "sleep longer than the client's timeout, then close without an answer",
    "truncated": "HTTP 200 with the JSON body cut mid-way",
    "html": "HTTP 200 with an HTML error page",
    "html502": "HTTP 502 with an HTML error page",
    "401": "HTTP 401 (bad token)",
    "403": "HTTP 403 (plan without access)",
    "404": "HTTP 404 (unknown ticker)",
    "empty": "HTTP 200 with an empty array []",
    "drop": "close the connection without an answer",
}
TRANSIENT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "timeout",
    "truncated",
    "html",
    "html502",
    "drop",
)

# kind -> what the WebSocket simulator does instead of sending a tick frame normally
WS_FAULT_KINDS: dict[str, str] = {
    "drop": "drop the connection after a number of tick frames (TCP abort or 1011 close)",
    "duplicate": "send the tick frame twice",
    "out_of_order": "hold the tick back and send it after the symbol's next tick",
    "malformed": "send a garbage frame (one of MALFORMED_KINDS) before the tick",
    "silence": "send no frames for a while; the connection stays open",
}
MALFORMED_KINDS: tuple[str, ...] = (
    "truncated",
    "html",
    "not_object",
    "missing_price",
    "string_price",
    "negative_price",
    "nan_price",
    "seconds_time",
    "missing_time",
    "unknown_symbol",
    "crossed_quote",
)


def check_rate(rate: float) -> float:
    """A fault rate as a float in [0, 1]."""
    rate = float(rate)
    if not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"fault rate must be in [0, 1], got {rate}")
    return rate


class FaultDice:
    """The seeded random draws of a simulator's faults (not thread-safe: callers draw
    under their own lock)."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(seed)

    def roll(self, rate: float) -> bool:
        """True with probability ``rate`` (no draw at all when ``rate`` is 0)."""
        return rate > 0 and self._rng.random() < rate

    def pick(self, kinds: Sequence[T]) -> T:
        return self._rng.choice(kinds)


# --------------------------------------------------------------------------- REST


@dataclass(frozen=True)
class Fault:
    """One REST fault (a kind of :data:`FAULT_KINDS`)."""

    kind: str
    retry_after: float = 1.0  # for 429
    status: int | None = None  # overrides the HTTP status of html / 5xx faults

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise InvalidInputError(
                f"unknown fault kind {self.kind!r}: expected one of {', '.join(FAULT_KINDS)}"
            )
        if not 0 <= self.retry_after <= 3600:
            raise InvalidInputError(f"retry_after must be in [0, 3600], got {self.retry_after}")


class FaultController:
    """The REST simulator's faults. ``inject(kind, count)`` queues faults for the next
    requests; ``random(rate, kinds, seed)`` then applies a fault to a share of the
    remaining ones; ``clear()`` resets. Thread-safe; driven from Python or the control
    endpoint."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._dice = FaultDice(0)

    def inject(
        self, kind: str, count: int = 1, retry_after: float = 1.0, status: int | None = None
    ) -> None:
        if not 1 <= count <= 1_000_000:
            raise InvalidInputError(f"fault count must be in [1, 1000000], got {count}")
        fault = Fault(str(kind), float(retry_after), status)
        with self._lock:
            self._queue.extend([fault] * count)

    def random(self, rate: float, kinds: Iterable[str] = TRANSIENT_KINDS, seed: int = 0) -> None:
        kinds = tuple(str(k) for k in kinds)
        for kind in kinds:
            Fault(kind)  # validates
        rate = check_rate(rate)
        if rate > 0 and not kinds:
            raise InvalidInputError("a random fault rate needs at least one fault kind")
        with self._lock:
            self._rate, self._kinds, self._dice = rate, kinds, FaultDice(seed)

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
            self._rate, self._kinds = 0.0, ()

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._queue)

    def next(self) -> Fault | None:
        """The fault for the request being served, if any."""
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            if self._dice.roll(self._rate):
                return Fault(self._dice.pick(self._kinds))
            return None


# --------------------------------------------------------------------------- WebSocket


@dataclass
class FaultPlan:
    """The WebSocket simulator's fault settings (:data:`WS_FAULT_KINDS`; all off by
    default)."""

    drop_after: int | None = None  # drop a connection after this many more tick frames
    drop_every: bool = False  # re-arm drop_after after each drop
    drop_abrupt: bool = True  # abort the TCP connection (no close frame)
    duplicate_rate: float = 0.0
    out_of_order_rate: float = 0.0
    malformed_rate: float = 0.0

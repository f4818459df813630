"""Switchable faults of the simulator: a FIFO queue of injected faults, then an
optional random fault rate. Thread-safe; driven from Python or the control endpoint."""

from __future__ import annotations

import random
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from hedgeflow.errors import InvalidInputError

# kind -> what the simulator does instead of answering normally
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


@dataclass(frozen=True)
class Fault:
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
    """``inject(kind, count)`` queues faults for the next requests; ``random(rate, kinds,
    seed)`` then applies a fault to a share of the remaining ones; ``clear()`` resets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: deque[Fault] = deque()
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self._rng = random.Random(0)

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
        if not 0.0 <= rate <= 1.0:
            raise InvalidInputError(f"fault rate must be in [0, 1], got {rate}")
        if rate > 0 and not kinds:
            raise InvalidInputError("a random fault rate needs at least one fault kind")
        with self._lock:
            self._rate, self._kinds, self._rng = float(rate), kinds, random.Random(seed)

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
            if self._rate > 0 and self._rng.random() < self._rate:
                return Fault(self._rng.choice(self._kinds))
            return None

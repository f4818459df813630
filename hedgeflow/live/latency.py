"""Tick-to-step latency of the live runtime (``LiveRuntime(measure_latency=True)``).

Measured for bars closed by a tick: from the frame's arrival in the client to the
step produced for the bar (before the sink stores it).
"""

from __future__ import annotations

import time

from hedgeflow.live.agent import LiveAgent, LiveStep
from hedgeflow.live.aggregator import Bar
from hedgeflow.sources.eodhd_ws import EodhdWsClient

__all__ = ["LatencyProbe", "TimedClient"]


class LatencyProbe:
    """Collects ``latencies_ns``; the runtime sets ``closing`` while it dispatches the
    bars a tick closed, :class:`TimedClient` notes each frame's arrival."""

    def __init__(self) -> None:
        self.latencies_ns: list[int] = []
        self.frame_t0 = 0
        self.closing = False

    def on_step(self, agent: LiveAgent, step: LiveStep, bar: Bar) -> None:
        if self.closing and self.frame_t0:
            self.latencies_ns.append(time.perf_counter_ns() - self.frame_t0)


class TimedClient(EodhdWsClient):
    """Notes each frame's arrival time for the latency measurement."""

    probe: LatencyProbe

    def _on_frame(self, raw: str | bytes) -> bool:
        self.probe.frame_t0 = time.perf_counter_ns()
        return super()._on_frame(raw)

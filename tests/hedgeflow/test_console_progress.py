"""The nightly progress counts every step it is told about: no `6/3`."""

from __future__ import annotations

import logging
from types import SimpleNamespace

from hedgeflow.console import PROGRESS_LOGGER, nightly_progress


def test_nightly_progress_total_covers_ingest_and_agent_steps() -> None:
    log = logging.getLogger(PROGRESS_LOGGER)
    symbols, agents = ("AAPL.US", "EURUSD.FOREX", "BTC-USD.CC"), ("stocks", "forex", "crypto")
    with nightly_progress(len(symbols), len(agents)) as progress:
        for symbol in symbols:  # what tasks/ingest.py logs per symbol
            result = SimpleNamespace(symbol=symbol, stored=10, quarantined=0, seconds=0.1)
            log.info("ingested", extra={"hedgeflow_event": "ingested", "hedgeflow_result": result})
        for agent in agents:  # what tasks/research.py logs per agent
            log.info("%s: 3 trades", agent, extra={"hedgeflow_event": "agent_done"})
        (task,) = progress.tasks
        assert (task.completed, task.total) == (6, 6)

"""A local EODHD-compatible server (REST now; the WebSocket side plugs in next to rest.py).

``python -m hedgeflow.sources.simulator --port 8765 --seed 7`` runs it from a shell.
"""

from hedgeflow.sources.faults import FAULT_KINDS, TRANSIENT_KINDS, Fault, FaultController
from hedgeflow.sources.simulator.rest import RequestRecord
from hedgeflow.sources.simulator.server import DEFAULT_TOKENS, Simulator

__all__ = [
    "DEFAULT_TOKENS",
    "FAULT_KINDS",
    "TRANSIENT_KINDS",
    "Fault",
    "FaultController",
    "RequestRecord",
    "Simulator",
]

"""``python -m hedgeflow.sources.simulator --port 8765 --seed 7 [--token T ...]``."""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading

from hedgeflow.sources.simulator.server import DEFAULT_TOKENS, Simulator
from hedgeflow.stdio import line_buffered


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hedgeflow.sources.simulator",
        description="Local EODHD-compatible server with synthetic data and fault injection.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--token",
        action="append",
        help=f"accepted API token (repeatable; default {DEFAULT_TOKENS[0]})",
    )
    parser.add_argument("--timeout-sleep", type=float, default=25.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    line_buffered()
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO)
    sim = Simulator(
        seed=args.seed,
        host=args.host,
        port=args.port,
        tokens=args.token or DEFAULT_TOKENS,
        timeout_sleep=args.timeout_sleep,
    )
    with sim:
        print(f"EODHD simulator on {sim.base_url} (seed {args.seed}); control: {sim.control_url}")
        print("faults: POST /_control/faults {'inject': '429', 'count': 1}; Ctrl-C stops")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The simulator's lifecycle: an HTTP server on 127.0.0.1 in a daemon thread."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from types import TracebackType

from hedgeflow.market import MAX_REQUEST_DAYS, normalize_symbol
from hedgeflow.sources.faults import FaultController
from hedgeflow.sources.simulator.rest import RequestRecord, RestHandler, SimulatorHTTPServer
from hedgeflow.sources.synthetic import SyntheticMarket

DEFAULT_TOKENS: tuple[str, ...] = ("demo-sim",)


class Simulator:
    """A local EODHD-compatible server serving a ``SyntheticMarket(seed)``.

    ``with Simulator(seed=7) as sim: ... sim.base_url`` (``http://127.0.0.1:PORT/api``).
    ``sim.faults`` injects faults; ``sim.request_log`` records every /api request.
    A ``timeout`` fault holds the request for ``timeout_sleep`` seconds (default: longer
    than the default client timeout of 20 s; stop() cuts it short), then closes.
    """

    def __init__(
        self,
        seed: int = 7,
        host: str = "127.0.0.1",
        port: int = 0,
        tokens: Iterable[str] = DEFAULT_TOKENS,
        symbols: Iterable[str] | None = None,
        max_request_days: dict[str, int] | None = None,
        timeout_sleep: float = 25.0,
        market: SyntheticMarket | None = None,
    ) -> None:
        self.market = market or SyntheticMarket(seed)
        self.host = host
        self.tokens = tuple(tokens)
        self.symbols = None if symbols is None else {normalize_symbol(s) for s in symbols}
        self.max_request_days = dict(max_request_days or MAX_REQUEST_DAYS)
        self.timeout_sleep = timeout_sleep
        self.faults = FaultController()
        # symbol -> the raw body its /splits answers with instead of the market's (tests
        # of malformed vendor data)
        self.split_answers: dict[str, bytes] = {}
        self.stopping = threading.Event()
        self._log: list[RequestRecord] = []
        self._log_lock = threading.Lock()
        self._requested_port = port
        self._httpd: SimulatorHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.base_url if self._httpd else "stopped"
        return f"Simulator(seed={self.market.seed}, {state})"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> Simulator:
        if self._httpd is not None:
            return self
        self.stopping.clear()
        httpd = SimulatorHTTPServer((self.host, self._requested_port), RestHandler)
        httpd.simulator = self
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"eodhd-simulator-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        httpd.close_open_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None

    close = stop

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the simulator is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.port}/_control"

    # -- request log ------------------------------------------------------------------

    def record(self, entry: RequestRecord) -> None:
        with self._log_lock:
            self._log.append(entry)

    @property
    def request_log(self) -> list[RequestRecord]:
        with self._log_lock:
            return list(self._log)

    def reset_log(self) -> None:
        with self._log_lock:
            self._log.clear()

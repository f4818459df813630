"""A real webhook receiver on 127.0.0.1 for the notification tests, with injected faults.

``WebhookReceiver()`` is a threaded HTTP server (a context manager) that records every
POST (arrival time, path, JSON body) and answers 200, unless a fault says otherwise:

* ``fail_first=k``: the first ``k`` requests of every ``event_id`` get HTTP 500;
* ``status=500``: every request gets that status (a receiver that never accepts);
* ``delay=s``: every answer waits ``s`` seconds first (past the client's timeout: the
  client gives up, the request still counts as received);
* ``closed_port()``: a port nobody listens on (connection refused).

``url`` carries a token in its path (``/hook/<token>``) so the tests can check it never
leaks.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = "s3cr3t-token-7f2a"


@dataclass(frozen=True)
class Received:
    at: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival
    path: str
    body: dict[str, Any]
    answered: int  # the status answered (0: the answer was abandoned)


class WebhookReceiver:
    def __init__(
        self, *, fail_first: int = 0, status: int = 200, delay: float = 0.0, token: str = TOKEN
    ) -> None:
        self.fail_first = fail_first
        self.status = status
        self.delay = delay
        self.token = token
        self.received: list[Received] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.arrived = threading.Condition(self._lock)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                at, wall = time.monotonic(), time.time()
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"_raw": raw.decode(errors="replace")}
                with receiver._lock:
                    eid = str(body.get("event_id"))
                    receiver._seen[eid] += 1
                    n = receiver._seen[eid]
                code = receiver.status
                if n <= receiver.fail_first:
                    code = 500
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:
                    code = 0
                with receiver.arrived:
                    receiver.received.append(Received(at, wall, self.path, body, code))
                    receiver.arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook/{self.token}"

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def bodies(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.body for r in self.received]

    def acknowledged(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if 200 <= r.answered < 300]

    def wait_for(self, n: int, timeout: float) -> bool:
        """Wait until ``n`` requests arrived (any answer)."""
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.received) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.arrived.wait(left)
        return True


def closed_port() -> int:
    """A loopback port with no listener (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

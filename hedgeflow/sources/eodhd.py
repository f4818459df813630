"""EODHD REST client for intraday bars and splits: range chunking, retries with backoff,
no token leaks.

The token travels only in the query string of the request (EODHD's only way).
It is registered with ``hedgeflow.secrets`` so log records of urllib3 (which logs
request URLs at DEBUG) are scrubbed at the source, and no exception raised here
carries a requests exception (their messages embed the URL) as cause or context:
errors are raised outside ``except`` blocks, from redacted descriptions.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import TypeVar

import numpy as np
import pandas as pd
import requests

from hedgeflow.columns import TS
from hedgeflow.config import NetworkSettings
from hedgeflow.errors import (
    DataFormatError,
    InvalidInputError,
    PermanentSourceError,
    TransientSourceError,
)
from hedgeflow.market import MAX_REQUEST_DAYS, normalize_symbol
from hedgeflow.secrets import TOKEN_ENV, install_redaction, redact, register_secret
from hedgeflow.sources.base import Fetched, check_request, empty_bars, epoch_us
from hedgeflow.sources.eodhd_format import excerpt, parse_intraday_json
from hedgeflow.splits import Split, parse_splits_json

log = logging.getLogger("hedgeflow.sources.eodhd")

_PERMANENT = {401, 403, 404, 422}
T = TypeVar("T")


@dataclass(frozen=True)
class Chunk:
    """One request: inclusive Unix-second bounds, as EODHD's from/to."""

    start: int
    end: int

    def bounds(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The half-open ``[lo, hi)`` UTC range this request covers."""
        lo = pd.Timestamp(self.start, unit="s", tz="UTC").as_unit("us")
        hi = pd.Timestamp(self.end + 1, unit="s", tz="UTC").as_unit("us")
        return lo, hi

    def describe(self) -> str:
        lo, hi = self.bounds()
        return f"[{lo.isoformat()}, {hi.isoformat()})"


def plan_chunks(start_us: int, end_us: int, max_days: int) -> list[Chunk]:
    """Split [start, end) into requests of at most ``max_days`` (from/to inclusive)."""
    if end_us <= start_us:
        return []
    first = start_us // 1_000_000
    last = -(-end_us // 1_000_000) - 1  # the last whole second before end
    step = int(max_days) * 86_400
    return [Chunk(lo, min(lo + step - 1, last)) for lo in range(first, last + 1, step)]


class EodhdClient:
    """MarketSource for EODHD's ``/intraday`` endpoint (or the local simulator)."""

    name = "eodhd"

    def __init__(
        self,
        token: str,
        network: NetworkSettings | None = None,
        max_request_days: dict[str, int] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        session: requests.Session | None = None,
    ) -> None:
        if not isinstance(token, str) or not token.strip():
            raise InvalidInputError(
                f"an EODHD API token is required: set {TOKEN_ENV} or pass token="
            )
        self._token = token.strip()
        register_secret(self._token)
        install_redaction()
        self.network = network or NetworkSettings()
        self.max_request_days = dict(MAX_REQUEST_DAYS)
        self.max_request_days.update(max_request_days or {})
        for interval, days in self.max_request_days.items():
            if not isinstance(days, int) or days < 1:
                raise InvalidInputError(f"max_request_days[{interval!r}] must be >= 1, got {days}")
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._session = session or requests.Session()
        self._base_url = self.network.base_url.rstrip("/")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self._base_url!r}, token='***')"

    # -- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> EodhdClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- MarketSource -----------------------------------------------------------------

    def fetch_bars(
        self,
        symbol: str,
        interval: str,
        start: datetime | pd.Timestamp,
        end: datetime | pd.Timestamp,
    ) -> pd.DataFrame:
        """Bars with start <= ts < end, fetched in range-limited chunks."""
        return self.fetch_report(symbol, interval, start, end).bars

    def fetch_report(
        self,
        symbol: str,
        interval: str,
        start: datetime | pd.Timestamp,
        end: datetime | pd.Timestamp,
    ) -> Fetched:
        """``fetch_bars`` plus the ranges of the requests answered with no bars."""
        sym, interval, start_ts, end_ts = check_request(symbol, interval, start, end)
        start_us, end_us = epoch_us(start_ts), epoch_us(end_ts)
        chunks = plan_chunks(start_us, end_us, self.max_request_days[interval])
        frames = [self._fetch_chunk(sym, interval, chunk) for chunk in chunks]
        empty = tuple(
            (max(lo, start_ts), min(hi, end_ts))
            for chunk, frame in zip(chunks, frames, strict=True)
            if frame.empty
            for lo, hi in [chunk.bounds()]
        )
        return Fetched(combine_chunks(frames, start_us, end_us), empty)

    # -- one request with retries -----------------------------------------------------

    def _fetch_chunk(self, symbol: str, interval: str, chunk: Chunk) -> pd.DataFrame:
        params = {"interval": interval, "from": str(chunk.start), "to": str(chunk.end)}
        where = f"{symbol} {interval} {chunk.describe()}"
        return self._get(f"intraday/{symbol}", params, symbol, where, parse_intraday_json)

    def fetch_splits(self, symbol: str, start: date, end: date) -> list[Split]:
        """The splits of ``symbol`` with ex-dates from ``start`` to ``end`` (inclusive),
        oldest first, from EODHD's ``/splits`` endpoint (one API call)."""
        sym = normalize_symbol(symbol)
        params = {"from": start.isoformat(), "to": end.isoformat()}
        where = f"splits of {sym} {start.isoformat()}..{end.isoformat()}"
        return self._get(f"splits/{sym}", params, sym, where, lambda b: parse_splits_json(b, sym))

    def _get(
        self,
        path: str,
        query: dict[str, str],
        symbol: str,
        where: str,
        parse: Callable[[bytes], T],
    ) -> T:
        """GET ``path`` with retries (backoff with jitter, Retry-After); the parsed body."""
        net = self.network
        url = f"{self._base_url}/{path}"
        params = {"api_token": self._token, "fmt": "json", **query}
        failure = "no attempt"
        attempts = net.max_retries + 1
        for attempt in range(attempts):
            permanent: str | None = None
            retry_after: float | None = None
            log.debug("EODHD GET %s (attempt %d/%d)", where, attempt + 1, attempts)
            try:
                resp = self._session.get(url, params=params, timeout=net.rest_timeout, stream=True)
                try:
                    body = read_bounded(resp, MAX_RESPONSE_BYTES)
                finally:
                    resp.close()
            except requests.Timeout:
                failure = f"timeout after {net.rest_timeout:g}s"
            except (requests.RequestException, OSError) as exc:
                if _is_read_timeout(exc):
                    failure = f"timeout after {net.rest_timeout:g}s"
                else:
                    failure = f"connection failed ({type(exc).__name__})"
            else:
                status = resp.status_code
                if body is None:  # a proxy's endless answer: never held in memory
                    failure = f"HTTP {status} response larger than {MAX_RESPONSE_BYTES:,} bytes"
                elif status == 200:
                    try:
                        return parse(body)
                    except DataFormatError as exc:
                        failure = redact(str(exc), self._token)
                elif status in _PERMANENT or (400 <= status < 500 and status not in (408, 429)):
                    permanent = self._permanent_message(status, symbol, where, body)
                else:
                    failure = f"HTTP {status}"
                    if status == 429:
                        failure = "HTTP 429 (rate limited)"
                        retry_after = _retry_after(resp.headers.get("Retry-After"))
            if permanent is not None:
                raise PermanentSourceError(permanent)
            if attempt + 1 >= attempts:
                break
            delay = self._delay(attempt, retry_after)
            log.warning(
                "EODHD %s: %s; retry %d/%d in %.2fs",
                where,
                failure,
                attempt + 1,
                net.max_retries,
                delay,
            )
            self._sleep(delay)
        raise TransientSourceError(
            f"EODHD request for {where} failed after {attempts} attempt(s); last failure: {failure}"
        )

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server sent one, else exponential backoff with full
        jitter; both capped at ``max_backoff_sec``."""
        cap = self.network.max_backoff_sec
        if retry_after is not None:
            return min(retry_after, cap)
        ceiling = min(cap, self.network.retry_backoff_sec * (2**attempt))
        return self._rng.uniform(0.0, ceiling)

    def _permanent_message(self, status: int, symbol: str, where: str, body: bytes) -> str:
        if status == 401:
            return "EODHD rejected the API token (HTTP 401)"
        if status == 403:
            return "EODHD refused access with this API token (HTTP 403): plan without this data?"
        if status == 404:
            return f"unknown ticker {symbol} (HTTP 404)"
        detail = redact(excerpt(body, 120), self._token)
        return f"EODHD rejected the request for {where} (HTTP {status}): {detail}"


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None if absent/invalid."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def combine_chunks(frames: list[pd.DataFrame], start_us: int, end_us: int) -> pd.DataFrame:
    """Concatenate chunk frames, keep start <= ts < end, drop timestamps repeated
    across chunk boundaries (the later chunk wins) and sort by ts (stable)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return empty_bars()
    if len(parts) == 1:
        df = parts[0]
        chunk_of = None
    else:
        chunk_of = np.repeat(np.arange(len(parts)), [len(p) for p in parts])
        df = pd.concat(parts, ignore_index=True)
    ts = df[TS].array.asi8
    keep = (ts >= start_us) & (ts < end_us)
    if not keep.all():
        df = df.loc[keep]
        ts = ts[keep]
        chunk_of = None if chunk_of is None else chunk_of[keep]
    strictly_increasing = len(ts) < 2 or bool(np.all(ts[1:] > ts[:-1]))
    if chunk_of is not None and not strictly_increasing:
        last_chunk = pd.Series(chunk_of).groupby(ts).transform("max").to_numpy()
        df = df.loc[chunk_of == last_chunk]
    if not strictly_increasing:
        df = df.sort_values(TS, kind="stable")
    return df.reset_index(drop=True)


# One request is at most MAX_REQUEST_DAYS of bars (120 days of 1-minute bars is ~20 MB of
# JSON); a larger answer is a misbehaving server or proxy, read no further.
MAX_RESPONSE_BYTES = 64 << 20


def read_bounded(resp: requests.Response, limit: int) -> bytes | None:
    """The body of a streamed response, or None once it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    for part in resp.iter_content(chunk_size=1 << 16):
        size += len(part)
        if size > limit:
            return None
        parts.append(part)
    return b"".join(parts)


def _is_read_timeout(exc: BaseException) -> bool:
    """requests reports a read timeout while streaming the body as a ConnectionError
    wrapping urllib3's ReadTimeoutError."""
    from urllib3.exceptions import ReadTimeoutError

    return any(isinstance(a, ReadTimeoutError) for a in getattr(exc, "args", ()))

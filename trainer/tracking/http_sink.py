"""Metrics to the platform over HTTP, with a local spool when it cannot be reached.

``POST <url>/api/v1/runs/<run_id>/metrics/`` with ``Authorization: Bearer <run token>`` and
body ``{"points": [{"step", "source", "key", "value"}, ...]}`` (at most ``batch_size`` points
per request). The platform's ingest is idempotent on (run, step, source, key), so sending a
point twice is harmless and the sink prefers that to losing one.

When the platform is unreachable (connection refused, time-out, HTTP 408/429/5xx) the points
are appended to a JSONL spool file and the server is left alone for ``retry_interval_s``;
the next ``log`` after that first replays the spool, in order, then sends the new points. A
spool left by an earlier process (a crash, a resume) is replayed the same way. Any other 4xx
(a revoked token, a rejected payload) will not heal by retrying: the points are spooled and
:class:`HttpSinkError` is raised. Events are not sent (the ingest API takes metrics only).

A run that ends while the platform is away would leave its last points on the trainer's disk,
which on a cluster nobody reads again: :meth:`close` keeps trying for up to ``close_wait_s``.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import SupportsFloat

from trainer.monitor.records import MetricKey
from trainer.tracking.base import Point, Tracker, metrics_to_points
from trainer.tracking.jsonl import dump_line, open_append

logger = logging.getLogger(__name__)

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class HttpSinkError(RuntimeError):
    """The platform refused the metrics for a reason retrying will not fix."""


class _Unreachable(Exception):
    """The platform could not be reached or asked to retry later."""


def metrics_endpoint(url: str, run_id: str) -> str:
    """``http://host:8000`` + ``run-1`` → ``http://host:8000/api/v1/runs/run-1/metrics/``."""
    return f"{url.rstrip('/')}/api/v1/runs/{urllib.parse.quote(run_id, safe='')}/metrics/"


class HttpSink(Tracker):
    """Sends points in batches; spools and replays them when the platform is away."""

    def __init__(
        self,
        url: str,
        run_id: str,
        token: str,
        *,
        spool_path: str | Path,
        batch_size: int = 1000,
        timeout_s: float = 10.0,
        retry_interval_s: float = 15.0,
        close_wait_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        opener: urllib.request.OpenerDirector | None = None,
    ) -> None:
        if not token:
            raise ValueError("token must be a non-empty string (the run-scoped bearer token)")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be > 0, got {batch_size}")
        if close_wait_s < 0:
            raise ValueError(f"close_wait_s must be >= 0, got {close_wait_s}")
        self.endpoint = metrics_endpoint(url, run_id)
        self.spool_path = Path(spool_path)
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.retry_interval_s = retry_interval_s
        self.close_wait_s = close_wait_s
        self._token = token
        self._clock = clock
        self._sleep = sleep
        self._opener = opener or urllib.request.build_opener()
        self._next_try = float("-inf")
        self._offline = False
        self.pending = self._count_spooled()

    # -- spool -------------------------------------------------------------------------------

    def _count_spooled(self) -> int:
        if not self.spool_path.is_file():
            return 0
        with self.spool_path.open(encoding="utf-8") as handle:
            return sum(1 for line in handle if line.strip())

    def _spool(self, points: Sequence[Point]) -> None:
        if not points:
            return
        with open_append(self.spool_path) as handle:
            handle.write("".join(dump_line(p) for p in points))
            handle.flush()
        self.pending += len(points)

    def _read_spool(self) -> list[Point]:
        if not self.spool_path.is_file():
            return []
        points: list[Point] = []
        with self.spool_path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                    points.append(
                        Point(step=obj["step"], source=obj["source"], key=obj["key"], value=obj["value"])
                    )
                except (json.JSONDecodeError, KeyError, TypeError):
                    # A line cut by a crash mid-write: the only thing that can be lost.
                    logger.warning("metrics spool %s: skipping unreadable line %d", self.spool_path, number)
        return points

    def _rewrite_spool(self, points: Sequence[Point]) -> None:
        if not points:
            self.spool_path.unlink(missing_ok=True)
            self.pending = 0
            return
        tmp = self.spool_path.with_name(self.spool_path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            handle.write("".join(dump_line(p) for p in points))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.spool_path)
        self.pending = len(points)

    # -- sending -----------------------------------------------------------------------------

    def _post(self, points: Sequence[Point]) -> None:
        body = json.dumps({"points": list(points)}, allow_nan=False, separators=(",", ":")).encode()
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._token}"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode("utf-8", "replace") if exc.fp else ""
            if exc.code in TRANSIENT_STATUS:
                raise _Unreachable(f"HTTP {exc.code}") from None
            raise HttpSinkError(
                f"{self.endpoint} refused {len(points)} metric points: HTTP {exc.code} {detail.strip()}; "
                f"they are kept in {self.spool_path} and sent again by the next log"
            ) from None
        except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, time-out
            raise _Unreachable(str(getattr(exc, "reason", exc))) from None

    def _send(self, points: Sequence[Point]) -> tuple[int, _Unreachable | HttpSinkError | None]:
        """Send in batches; returns how many points went through, and the failure that stopped it."""
        sent = 0
        for start in range(0, len(points), self.batch_size):
            chunk = points[start : start + self.batch_size]
            try:
                self._post(chunk)
            except (_Unreachable, HttpSinkError) as exc:
                return sent, exc
            sent += len(chunk)
        return sent, None

    def _deliver(self, new: Sequence[Point], *, force: bool = False) -> None:
        if self.pending and not force and self._clock() < self._next_try:
            self._spool(new)
            return
        backlog = self._read_spool() if self.pending else []
        queue = [*backlog, *new]
        sent, error = self._send(queue)
        if error is None:
            if backlog:
                self._rewrite_spool([])
                logger.info("metrics: delivered %d spooled points to %s", len(backlog), self.endpoint)
            self._offline = False
            self._next_try = float("-inf")
            return
        if backlog:
            self._rewrite_spool(queue[sent:])
        else:
            self._spool(queue[sent:])
        if isinstance(error, HttpSinkError):
            raise error
        if not self._offline:
            logger.warning(
                "metrics: %s unreachable (%s); spooling to %s", self.endpoint, error, self.spool_path
            )
        self._offline = True
        self._next_try = self._clock() + self.retry_interval_s

    # -- Tracker -----------------------------------------------------------------------------

    def log(self, step: int, metrics: Mapping[MetricKey, SupportsFloat | None]) -> None:
        self._deliver(metrics_to_points(step, metrics))

    def flush(self) -> None:
        """Try to deliver the spool now, ignoring the retry interval."""
        if self.pending:
            self._deliver([], force=True)

    def close(self) -> None:
        """Deliver the spool, trying for up to ``close_wait_s`` while the platform is away; what
        cannot be sent by then stays in the spool for a later process (a resume replays it)."""
        deadline = self._clock() + self.close_wait_s
        waited = False
        while True:
            try:
                self.flush()
            except HttpSinkError as exc:
                logger.error("metrics: %s", exc)
                return
            remaining = deadline - self._clock()
            if not self.pending:
                return
            if remaining <= 0:
                logger.error(
                    "metrics: %d points could not be delivered to %s; they are kept in %s",
                    self.pending,
                    self.endpoint,
                    self.spool_path,
                )
                return
            if not waited:
                logger.warning(
                    "metrics: waiting up to %.0f s for %s to take %d spooled points",
                    remaining,
                    self.endpoint,
                    self.pending,
                )
                waited = True
            self._sleep(min(max(self.retry_interval_s, 1.0), remaining))

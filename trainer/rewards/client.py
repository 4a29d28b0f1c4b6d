"""Client of the reward service (:mod:`trainer.rewards.service`): batches spread over several
service addresses, each call with a timeout, retried elsewhere on failure.

A batch is cut into chunks of ``batch_size``; chunk i goes first to address i mod n and, on a
connection error, a timeout, a 5xx or an invalid reply, to the next address after a short
back-off, up to ``retries`` more times. A chunk that still fails scores 0 with an error
(counted in ``reward_errors`` like a timeout). A 413 splits the chunk in two. Answers that mean
the client is misconfigured (400, 401, 403, 404) raise :class:`RewardServiceError`.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
import urllib.parse
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from trainer.rewards.requests import RewardRequest, RewardResult, zero_result
from trainer.rewards.wire import WireError, request_to_json, results_from_body

SCORE_PATH = "/v1/score"
HEALTH_PATH = "/v1/health"
MAX_REPLY_BYTES = 256 * 1024 * 1024


class RewardServiceError(RuntimeError):
    """The reward service refused a request in a way retrying cannot fix (bad token, bad request)."""


class _Retryable(Exception):
    pass


class _TooLarge(Exception):
    pass


def _split_address(address: str) -> tuple[str, int]:
    parsed = urllib.parse.urlsplit(address if "://" in address else f"http://{address}")
    if parsed.scheme != "http" or not parsed.hostname or parsed.port is None:
        raise ValueError(f"reward service address must look like http://host:port, got {address!r}")
    return parsed.hostname, parsed.port


class RewardClient:
    """Scores :class:`RewardRequest` batches on one or more reward services.

    ``addresses``: ``http://host:port`` of each service. ``timeout_s``: limit of one HTTP call
    (keep it above ``batch_size`` × the service's per-sample limit / its workers).
    ``retries``: further attempts of a failed chunk, each on the next address.
    """

    def __init__(
        self,
        addresses: str | Sequence[str],
        token: str,
        *,
        timeout_s: float = 300.0,
        retries: int = 3,
        batch_size: int = 64,
        backoff_s: float = 0.2,
        max_parallel: int | None = None,
    ) -> None:
        if isinstance(addresses, str):
            addresses = [addresses]
        if not addresses:
            raise ValueError("give at least one reward service address")
        if batch_size < 1 or retries < 0 or timeout_s <= 0:
            raise ValueError("batch_size must be >= 1, retries >= 0 and timeout_s > 0")
        self.addresses = [_split_address(a) for a in addresses]
        self._token = token
        self.timeout_s = float(timeout_s)
        self.retries = retries
        self.batch_size = batch_size
        self.backoff_s = backoff_s
        self.max_parallel = max_parallel or 2 * len(self.addresses)
        self.failures = 0  # HTTP calls that failed and were retried or given up
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------
    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]:
        """Results of ``items``, in order (same as :meth:`RewardPool.score` on the service's side)."""
        items = list(items)
        results: list[RewardResult | None] = [None] * len(items)
        sendable: list[tuple[int, str]] = []  # (index, the item's JSON)
        for i, item in enumerate(items):
            try:
                sendable.append((i, json.dumps(request_to_json(item), allow_nan=False)))
            except (TypeError, ValueError) as exc:  # e.g. a NaN ratio: not JSON
                results[i] = zero_result(item, f"error: the request is not JSON-serialisable: {exc}"[:500])
        chunks = [sendable[i : i + self.batch_size] for i in range(0, len(sendable), self.batch_size)]
        if chunks:
            workers = max(1, min(self.max_parallel, len(chunks)))
            with ThreadPoolExecutor(workers, thread_name_prefix="reward-client") as executor:
                futures = [
                    executor.submit(
                        self._score_chunk, [items[i] for i, _ in chunk], [j for _, j in chunk], start
                    )
                    for start, chunk in enumerate(chunks)
                ]
                for chunk, future in zip(chunks, futures, strict=True):
                    for (i, _), result in zip(chunk, future.result(), strict=True):
                        results[i] = result
        return results  # type: ignore[return-value]

    def health(self) -> list[bool]:
        """Whether each address answers ``GET /v1/health``."""
        status = []
        for address in self.addresses:
            try:
                code, _ = self._call(address, "GET", HEALTH_PATH, None)
                status.append(code == 200)
            except (OSError, http.client.HTTPException):
                self._drop(address)
                status.append(False)
        return status

    def close(self) -> None:
        """Close this thread's connections (other threads' close with them)."""
        for conn in getattr(self._local, "conns", {}).values():
            conn.close()
        self._local.conns = {}

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------
    def _conn(self, address: tuple[str, int]) -> http.client.HTTPConnection:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(address)
        if conn is None:
            conn = conns[address] = http.client.HTTPConnection(*address, timeout=self.timeout_s)
        return conn

    def _drop(self, address: tuple[str, int]) -> None:
        conn = getattr(self._local, "conns", {}).pop(address, None)
        if conn is not None:
            conn.close()

    def _call(
        self, address: tuple[str, int], method: str, path: str, body: bytes | None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self._token}"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        for fresh in (False, True):
            conn = self._conn(address)
            reused = getattr(conn, "_triune_used", False)
            try:
                conn.request(method, path, body=body, headers=headers)
                reply = conn.getresponse()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed while idle: once more on a new one.
                self._drop(address)
                if fresh or not reused:
                    raise
                continue
            conn._triune_used = True  # type: ignore[attr-defined]
            data = reply.read(MAX_REPLY_BYTES + 1)
            if len(data) > MAX_REPLY_BYTES:
                self._drop(address)
                raise _Retryable("the reply is too large")
            if reply.will_close:
                self._drop(address)
            return reply.status, data
        raise AssertionError("unreachable")

    def _post(
        self, address: tuple[str, int], items: list[RewardRequest], encoded: list[str]
    ) -> list[RewardResult]:
        body = ('{"items":[' + ",".join(encoded) + "]}").encode()
        try:
            status, data = self._call(address, "POST", SCORE_PATH, body)
        except (OSError, http.client.HTTPException) as exc:
            self._drop(address)
            raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
        if status == 200:
            try:
                return results_from_body(json.loads(data), len(items))
            except (ValueError, WireError) as exc:
                raise _Retryable(f"invalid reply: {exc}") from exc
        message = _message(data)
        if status == 413:
            raise _TooLarge(message)
        if status >= 500 or status == 429:
            raise _Retryable(f"HTTP {status}: {message}")
        raise RewardServiceError(
            f"reward service {address[0]}:{address[1]} answered HTTP {status}: {message}"
        )

    def _score_chunk(self, items: list[RewardRequest], encoded: list[str], start: int) -> list[RewardResult]:
        error = "no attempt"
        for attempt in range(self.retries + 1):
            address = self.addresses[(start + attempt) % len(self.addresses)]
            try:
                return self._post(address, items, encoded)
            except _TooLarge as exc:
                if len(items) == 1:
                    return [zero_result(items[0], f"error: too large for the reward service: {exc}")]
                half = math.ceil(len(items) / 2)
                return self._score_chunk(items[:half], encoded[:half], start) + self._score_chunk(
                    items[half:], encoded[half:], start + 1
                )
            except _Retryable as exc:
                error = str(exc)
                with self._lock:
                    self.failures += 1
                if attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
        text = f"error: reward service unavailable after {self.retries + 1} attempts: {error}"[:500]
        return [zero_result(item, text) for item in items]


def _message(data: bytes) -> str:
    try:
        body = json.loads(data)
        return (
            str(body.get("message", ""))[:300]
            if isinstance(body, dict)
            else data[:300].decode(errors="replace")
        )
    except ValueError:
        return data[:300].decode(errors="replace")

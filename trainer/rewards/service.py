"""The remote reward service: HTTP in front of a :class:`RewardPool`, as V-Triune's reward server.

``python -m trainer.rewards.service --port 8192 --token T`` (or the token in
``TRIUNE_REWARD_TOKEN``) serves:

- ``POST /v1/score`` with ``Authorization: Bearer T`` and a JSON body ``{"items": [...]}``
  (:mod:`trainer.rewards.wire`) → ``{"results": [...]}``, same results as in-process scoring;
- ``GET /v1/health`` → ``{"status": "ok"}`` (no token needed, tells nothing else).

Errors use one shape, ``{"message", "code", "extra"}``: 401 without the right token, 411
without Content-Length, 413 for a body over ``--max-body-mb`` or too many items, 415 for a
body that is not JSON, 400 for a malformed request (the message names the field), 503 when
more requests are in flight than ``--max-inflight`` (retry elsewhere). It binds to 127.0.0.1
unless ``--host`` says otherwise.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import signal
import sys
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from trainer.rewards.pool import RewardPool
from trainer.rewards.requests import zero_result
from trainer.rewards.wire import MAX_ITEMS, WireError, check_result, requests_from_body, result_to_json

TOKEN_ENV = "TRIUNE_REWARD_TOKEN"
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_INFLIGHT = 32
DISCARD_LIMIT_BYTES = 16 * 1024 * 1024  # a refused body is read up to this, then the connection is closed
SOCKET_TIMEOUT_S = 60.0  # a client that stalls mid-request is dropped after this


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], service: RewardService) -> None:
        self.service = service
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TriuneReward/1"
    sys_version = ""
    timeout = SOCKET_TIMEOUT_S
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        if self.server.service.verbose:
            super().log_message(format, *args)

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, allow_nan=False, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, code: str, message: str, *, close: bool = False, **headers: str) -> None:
        extra_headers = dict(headers)
        if close:  # the body is left unread: drop the connection after the reply
            self._discard_body(DISCARD_LIMIT_BYTES)
            self.close_connection = True
            extra_headers["Connection"] = "close"
        self._send(status, {"message": message, "code": code, "extra": {}}, extra_headers)

    def _discard_body(self, limit: int) -> None:
        """Read and drop up to ``limit`` bytes of the body, so the client sees the reply, not a reset."""
        length = self.headers.get("Content-Length", "")
        left = min(int(length), limit) if length.isdigit() else 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            left -= len(chunk)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        if self.path == "/v1/health":
            self._send(200, {"status": "ok"})
        else:
            self._error(404, "not_found", f"no such endpoint: GET {self.path[:100]}")

    def do_POST(self) -> None:  # noqa: N802
        service = self.server.service
        if self.path != "/v1/score":
            self._error(404, "not_found", f"no such endpoint: POST {self.path[:100]}", close=True)
            return
        if not service.authorized(self.headers.get("Authorization")):
            self._error(
                401, "unauthorized", "a valid 'Authorization: Bearer <token>' header is required",
                close=True, **{"WWW-Authenticate": "Bearer"},
            )  # fmt: skip
            return
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._error(411, "length_required", "send the body with a Content-Length header", close=True)
            return
        if int(length) > service.max_body_bytes:
            limit = service.max_body_bytes
            self._error(
                413, "too_large", f"the body is {length} bytes; at most {limit} are accepted", close=True
            )
            return
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            self._error(415, "unsupported_media_type", "send the body as application/json", close=True)
            return
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            self._error(400, "invalid_json", f"the body is not valid JSON: {str(exc)[:200]}")
            return
        try:
            requests = requests_from_body(body, service.max_items)
        except WireError as exc:
            status = 413 if "at most" in str(exc) and "entries" in str(exc) else 400
            self._error(status, "invalid_request", str(exc))
            return
        if not service.inflight.acquire(blocking=False):
            self._error(
                503, "busy", "too many requests in flight; retry later or elsewhere", **{"Retry-After": "1"}
            )
            return
        try:
            results = service.pool.score(requests)
        except RuntimeError as exc:
            self._error(503, "unavailable", f"the reward pool cannot score: {exc}")
            return
        finally:
            service.inflight.release()
        out = []
        for request, result in zip(requests, results, strict=True):
            try:
                check_result(result)
            except WireError as exc:  # never send what the client would refuse
                result = zero_result(request, f"error: invalid reward: {exc}")
            out.append(result_to_json(result))
        self._send(200, {"results": out})


class RewardService:
    """A running reward service: an HTTP server thread in front of a :class:`RewardPool`.

    The caller owns the pool (and closes it); :meth:`close` stops the HTTP server.
    """

    def __init__(
        self,
        pool: RewardPool,
        token: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_items: int = MAX_ITEMS,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
        verbose: bool = False,
    ) -> None:
        if not isinstance(token, str) or not token:
            raise ValueError("the reward service needs a non-empty token")
        self.pool = pool
        self._token = token.encode()
        self.max_body_bytes = max_body_bytes
        self.max_items = max_items
        self.inflight = threading.BoundedSemaphore(max_inflight)
        self.verbose = verbose
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, name="reward-service", daemon=True)

    @property
    def address(self) -> str:
        """``http://host:port`` of the service."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def authorized(self, header: str | None) -> bool:
        """Whether ``header`` is ``Bearer <the token>`` (compared in constant time)."""
        if not header or not header.startswith("Bearer "):
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self._token)

    def start(self) -> RewardService:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread.is_alive():
            self._thread.join()

    def __enter__(self) -> RewardService:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer.rewards.service", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--token", default=None, help=f"bearer token clients must send (default: ${TOKEN_ENV})"
    )
    parser.add_argument("--workers", type=int, default=None, help="scoring processes (default: CPU count)")
    parser.add_argument("--timeout-s", type=float, default=10.0, help="time limit of one sample (default 10)")
    parser.add_argument(
        "--memory-limit-mb", type=int, default=2048, help="memory a worker may add (default 2048)"
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=DEFAULT_MAX_BODY_BYTES / 2**20, help="largest body"
    )
    parser.add_argument("--max-inflight", type=int, default=DEFAULT_MAX_INFLIGHT, help="concurrent requests")
    parser.add_argument("--verbose", action="store_true", help="log every request")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    token = args.token or os.environ.get(TOKEN_ENV, "")
    if not token:
        print(f"error: give a token with --token or ${TOKEN_ENV}", file=sys.stderr)
        return 2
    with RewardPool(args.workers, args.timeout_s, memory_limit_mb=args.memory_limit_mb) as pool:
        service = RewardService(
            pool,
            token,
            host=args.host,
            port=args.port,
            max_body_bytes=int(args.max_body_mb * 2**20),
            max_inflight=args.max_inflight,
            verbose=args.verbose,
        )
        stop = threading.Event()

        def _stop(signum: int, frame: object) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        service.start()
        print(f"reward service listening on {service.address} with {pool.workers} workers", flush=True)
        while not stop.wait(0.5):
            pass
        service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A real local Ray head, a live platform server and a real Celery worker for runs on Ray."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 90


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class RayHead:
    """A Ray head on loopback in a process group of its own; ``stop`` ends the whole group."""

    def __init__(self, *, num_cpus: int = 2, dashboard_port: int | None = None) -> None:
        self.temp = Path(tempfile.mkdtemp(prefix="triune-ray-", dir="/tmp"))
        self.dashboard_port = dashboard_port or _free_port()
        self.url = f"http://127.0.0.1:{self.dashboard_port}"
        bin_dir = Path(sys.executable).parent
        env = {
            **os.environ,
            "RAY_USAGE_STATS_ENABLED": "0",
            "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
            "PYTHONPATH": str(ROOT),
            "HF_HUB_OFFLINE": "1",
        }
        self.log = open(self.temp / "head.log", "wb")
        self.process = subprocess.Popen(
            [
                str(bin_dir / "ray"),
                "start",
                "--head",
                "--block",
                "--port",
                str(_free_port()),
                "--node-ip-address",
                "127.0.0.1",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self.dashboard_port),
                "--num-cpus",
                str(num_cpus),
                "--object-store-memory",
                str(200 * 1024**2),
                "--temp-dir",
                str(self.temp),
                "--include-dashboard",
                "true",
                "--disable-usage-stats",
                # Ray's fixed default ports (the agent's 52365, ...) would collide with another head.
                *self._free_ports(),
            ],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _answers(f"{self.url}/api/version"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop(signal.SIGKILL)
                raise RuntimeError(
                    "the Ray head did not start:\n" + (self.temp / "head.log").read_text()[-3000:]
                )
            time.sleep(0.2)

    @staticmethod
    def _free_ports() -> list[str]:
        options = [
            "--dashboard-agent-listen-port",
            "--dashboard-agent-grpc-port",
            "--runtime-env-agent-port",
            "--metrics-export-port",
            "--ray-client-server-port",
            "--node-manager-port",
            "--object-manager-port",
        ]
        return [part for option in options for part in (option, str(_free_port()))]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of this test session on loopback (2 CPUs)."""
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


@pytest.fixture
def celery_worker_queue():
    """A real Celery worker (solo pool, in a thread) on a queue of this test's own."""
    import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for the start-up check
    from celery.contrib.testing.worker import start_worker

    from control.celery import app

    queue = f"triune-test-{uuid.uuid4().hex}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        with start_worker(app, pool="solo", concurrency=1, queues=[queue], loglevel="WARNING") as worker:
            yield SimpleNamespace(app=app, queue=queue, worker=worker)
    finally:
        app.conf.task_default_queue = previous


@pytest.fixture
def platform(ray_head, live_server, settings, storage_root, celery_worker_queue):
    """The platform as a job sees it: its URL, the local target on the test's Ray head, storage."""
    settings.TRIUNE_RAY_JOBS_URL = ray_head.url
    settings.PUBLIC_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    return SimpleNamespace(url=live_server.url, ray=ray_head, storage=storage_root)

"""A real local Ray head, a live platform server and a real Celery worker for runs on Ray."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import urllib.request
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
    """The platform's embedded Ray head (token authentication, loopback only) in a folder of its own."""

    def __init__(self, *, num_cpus: int = 2, dashboard_port: int | None = None, folder: Path | None = None):
        from control.embedded import EmbeddedRay

        self.folder = folder or Path(tempfile.mkdtemp(prefix="triune-ray-", dir="/tmp"))
        self.head = EmbeddedRay(
            data_dir=self.folder, num_cpus=num_cpus, num_gpus=0, dashboard_port=dashboard_port or _free_port()
        )
        self.url = self.head.start()
        self.dashboard_port = self.head.ports["dashboard"]
        self.token_path = self.head.token_path
        self.headers = {"Authorization": f"Bearer {self.head.token()}"}

    def kill(self) -> None:
        """The node dies: SIGKILL to every process of the head, its jobs included."""
        for pid in self.head.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.head.stop()

    def restart(self) -> RayHead:
        """A new, empty head on the same address and token."""
        return RayHead(
            num_cpus=int(self.head.num_cpus), dashboard_port=self.dashboard_port, folder=self.folder
        )

    def stop(self) -> None:
        self.head.stop()


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of this test session on loopback (2 CPUs)."""
    head = RayHead(num_cpus=2)
    yield head
    head.stop()


@pytest.fixture
def platform(ray_head, live_server, settings, storage_root, celery_worker_queue):
    """The platform as a job sees it: its URL, the local target on the test's Ray head, storage."""
    settings.TRIUNE_RAY_JOBS_URL = ray_head.url
    settings.RAY_AUTH_TOKEN_PATH = str(ray_head.token_path)
    settings.PUBLIC_URL = live_server.url
    settings.TRIUNE_JOB_PLATFORM_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    return SimpleNamespace(url=live_server.url, ray=ray_head, storage=storage_root)

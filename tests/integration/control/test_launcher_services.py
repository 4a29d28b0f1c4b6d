"""The launcher's services for real: the local Ray head, and commands that attach to a running platform.

A Ray head starts in a temporary directory (about 5-15 s); ``manage`` and ``token`` run as the
command line runs them, in a subprocess, against an embedded PostgreSQL started here as ``up``
starts it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import quote, urlsplit

import psutil
import pytest

from control.embedded import EmbeddedPostgres, EmbeddedRay, free_port, port_open

ROOT = Path(__file__).resolve().parents[3]
JOB_DEADLINE_S = 120
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def _alive(pids: set[int]) -> list[int]:
    """Those of ``pids`` still alive (zombies count as gone: they hold nothing but their pid)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            continue
    return alive


def _status(url: str, headers: dict | None = None) -> int:
    request = urllib.request.Request(f"{url}/api/version", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _start_head(path: Path) -> EmbeddedRay:
    head = EmbeddedRay(path, num_cpus=1, object_store_mb=200, dashboard_port=free_port())
    try:
        head.start()
    except BaseException:
        head.stop()
        raise
    return head


def _cleanup_head(head: EmbeddedRay) -> None:
    head.stop()
    if head.temp_dir != head.data_dir:
        shutil.rmtree(head.temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    head = _start_head(tmp_path_factory.mktemp("data") / "ray")
    yield head
    _cleanup_head(head)


def _run_job_with_token_env(head: EmbeddedRay, entrypoint: str) -> dict:
    """Submit through Ray's own client in a fresh process that has only the token variables."""
    script = (
        "import json, sys, time\n"
        "from ray.job_submission import JobSubmissionClient\n"
        f"client = JobSubmissionClient({head.url!r})\n"
        f"job = client.submit_job(entrypoint={entrypoint!r})\n"
        f"deadline = time.monotonic() + {JOB_DEADLINE_S}\n"
        "while not client.get_job_status(job).is_terminal():\n"
        "    if time.monotonic() > deadline:\n"
        "        sys.exit('the job did not end in time')\n"
        "    time.sleep(0.2)\n"
        "print(json.dumps({'status': str(client.get_job_status(job).value), "
        "'logs': client.get_job_logs(job)}))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(head.token_path), RAY_USAGE_STATS_ENABLED="0")
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=JOB_DEADLINE_S + 60
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_jobs_api_answers_only_with_the_heads_token(head: EmbeddedRay, monkeypatch) -> None:
    from ray.job_submission import JobSubmissionClient

    assert head.url == f"http://127.0.0.1:{head.ports['dashboard']}"
    assert _status(head.url, {"Authorization": f"Bearer {head.token()}"}) == 200
    assert _status(head.url) == 401
    assert _status(head.url, {"Authorization": "Bearer not-the-token"}) in (401, 403)
    # The platform's way: the token as an explicit header, no RAY_AUTH_MODE in its environment.
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token()}"})
    assert isinstance(client.list_jobs(), list)
    with pytest.raises(Exception, match="(?i)auth"):
        JobSubmissionClient(head.url).list_jobs()


def test_a_job_submitted_with_the_token_env_runs_with_this_venv_and_repository(head: EmbeddedRay) -> None:
    entrypoint = (
        "python -c \"import sys, importlib.util; print(42); print('exe', sys.executable); "
        "print('trainer', importlib.util.find_spec('trainer').origin)\""
    )
    job = _run_job_with_token_env(head, entrypoint)
    assert job["status"] == "SUCCEEDED", job["logs"][-2000:]
    lines = job["logs"].splitlines()
    assert "42" in lines
    assert f"exe {Path(sys.executable).parent / 'python'}" in lines
    assert f"trainer {ROOT / 'trainer' / '__init__.py'}" in lines


def test_the_head_listens_on_loopback_only(head: EmbeddedRay) -> None:
    listening: dict[int, str] = {}
    for pid in head.pids():
        try:
            connections = psutil.Process(pid).net_connections(kind="inet")
        except psutil.Error:
            continue
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN:
                listening[conn.laddr.port] = conn.laddr.ip
    assert listening[head.ports["dashboard"]] in LOOPBACK
    assert listening[head.ports["gcs"]] in LOOPBACK
    assert {ip for ip in listening.values()} <= LOOPBACK, listening


def test_stop_ends_every_process_of_the_head_and_its_running_job(tmp_path: Path) -> None:
    from ray.job_submission import JobSubmissionClient

    head = _start_head(tmp_path / "ray")
    try:
        assert head.start_seconds > 0
        client = JobSubmissionClient(head.url, headers={"Authorization": f"Bearer {head.token()}"})
        job = client.submit_job(
            entrypoint="python -c \"import time; print('ready', flush=True); time.sleep(600)\""
        )
        deadline = time.monotonic() + JOB_DEADLINE_S
        while "ready" not in client.get_job_logs(job):
            assert time.monotonic() < deadline, "the job did not start in time"
            assert not client.get_job_status(job).is_terminal(), client.get_job_logs(job)
            time.sleep(0.2)
        pids = head.pids()
        # The entrypoint runs in a session of its own; it is found as a descendant.
        drivers = {
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if "time.sleep(600)" in " ".join(p.info["cmdline"] or [])
        }
        assert drivers and drivers <= pids
        assert len(pids) > 5
    finally:
        _cleanup_head(head)
    assert _alive(pids) == []
    assert head.process is None and head.exit_code() is None


# --- manage and token attach to a running platform and stop nothing they did not start ---------------

READ_DATABASE = (
    "import json, os\n"
    "from django.db import connection\n"
    "with connection.cursor() as cursor:\n"
    "    cursor.execute('SELECT 1')\n"
    "pid_file = os.path.join(os.environ['TRIUNE_DATA_DIR'], 'postgres', 'postmaster.pid')\n"
    "postmaster = int(open(pid_file).readline()) if os.path.exists(pid_file) else None\n"
    "print(json.dumps({'host': connection.settings_dict['HOST'], 'name': connection.settings_dict['NAME'],\n"
    "                  'redis': os.environ['REDIS_URL'], 'postmaster': postmaster}))\n"
)


def _launcher(data: Path, *argv: str, **extra_env: str) -> subprocess.CompletedProcess:
    """``./triune <argv>`` as a fresh process on ``data``, with no service URLs of this test session."""
    drop = ("DATABASE_URL", "REDIS_URL", "TRIUNE_RAY_JOBS_URL", "RAY_AUTH_TOKEN_PATH", "TRIUNE_TESTING")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(TRIUNE_DATA_DIR=str(data), **extra_env)
    return subprocess.run(
        [sys.executable, "-m", "control.launcher", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _answers(pg: EmbeddedPostgres) -> bool:
    return "1 row" in pg.server.psql("SELECT 1;")


@pytest.fixture
def running_postgres(tmp_path: Path):
    """An embedded PostgreSQL started as ``up`` starts it, in this test's data directory."""
    pg = EmbeddedPostgres(tmp_path / "data" / "postgres")
    url = pg.start()
    assert pg.owned
    yield pg, url
    pg.stop()


def _write_state(monkeypatch, data: Path, **urls: str) -> Path:
    """services.json as the running ``up`` (this test process) writes it."""
    from control.launcher import services_state_write

    monkeypatch.setenv("TRIUNE_DATA_DIR", str(data))
    for name, value in urls.items():
        monkeypatch.setenv(name, value)
    return services_state_write(url="http://127.0.0.1:1")


def test_manage_attaches_to_the_running_up_and_stops_nothing(running_postgres, tmp_path, monkeypatch) -> None:
    pg, url = running_postgres
    data = tmp_path / "data"
    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15")
    state = _write_state(monkeypatch, data, DATABASE_URL=url, REDIS_URL=redis_url, TRIUNE_RAY_JOBS_URL="")
    assert json.loads(state.read_text())["pid"] == os.getpid()

    result = _launcher(data, "manage", "shell", "--no-imports", "-c", READ_DATABASE)
    assert result.returncode == 0, result.stderr[-3000:]
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    assert (seen["name"], seen["redis"], seen["postmaster"]) == ("triune", redis_url, pg.pid)
    assert "embedded" not in result.stderr  # it started nothing
    assert _answers(pg) and psutil.pid_exists(pg.pid)


def test_manage_leaves_running_a_postgres_it_found_running(running_postgres, tmp_path) -> None:
    """The defect: manage used to stop the embedded PostgreSQL of the running platform on exit."""
    pg, _ = running_postgres
    result = _launcher(tmp_path / "data", "manage", "shell", "--no-imports", "-c", READ_DATABASE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "attached to the running embedded PostgreSQL" in result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1])["postmaster"] == pg.pid
    assert _answers(pg) and psutil.pid_exists(pg.pid)
    # The Redis it started for itself is gone.
    redis = urlsplit(json.loads(result.stdout.strip().splitlines()[-1])["redis"])
    assert redis.hostname == "127.0.0.1" and not port_open("127.0.0.1", redis.port)


def test_manage_with_nothing_running_starts_and_stops_its_own(tmp_path: Path) -> None:
    data = tmp_path / "data"
    # A state file left by an ``up`` that died: its pid no longer runs.
    (data / "run").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (data / "run" / "services.json").write_text(
        json.dumps({"pid": dead.pid, "pid_started": 1.0, "database_url": "postgres://nowhere:1/x"})
    )
    result = _launcher(data, "manage", "shell", "--no-imports", "-c", READ_DATABASE)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "started embedded PostgreSQL" in result.stderr
    postmaster = json.loads(result.stdout.strip().splitlines()[-1])["postmaster"]
    assert postmaster is not None
    assert _alive({postmaster}) == []
    assert not (data / "postgres" / "postmaster.pid").exists()


@pytest.mark.django_db(transaction=True)
def test_token_prints_only_a_new_token_of_the_admin_user(make_user, tmp_path, monkeypatch) -> None:
    from django.db import connection

    from control.services.tokens import api_token_authenticate

    admin = make_user("token-admin")
    db = connection.settings_dict
    host = quote(db["HOST"], safe="") if db["HOST"].startswith("/") else f"{db['HOST']}:{db['PORT'] or 5432}"
    database_url = f"postgres://{db['USER']}@{host}/{db['NAME']}"
    data = tmp_path / "data"
    _write_state(monkeypatch, data, DATABASE_URL=database_url, REDIS_URL=os.environ.get("REDIS_URL", ""))

    result = _launcher(data, "token", "--name", "ci", TRIUNE_ADMIN_USER="token-admin")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("\n") == 1
    token = api_token_authenticate(raw=result.stdout.strip())
    assert token is not None and (token.user_id, token.name) == (admin.pk, "ci")

    missing = _launcher(data, "token", "--user", "nobody-here")
    assert (missing.returncode, missing.stdout) == (2, "")
    assert "triune: no active user 'nobody-here'; name one with --user" in missing.stderr

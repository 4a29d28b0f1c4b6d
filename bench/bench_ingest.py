"""Metric ingest over HTTP into PostgreSQL: Triune's ingest API against an MLflow tracking server.

Both servers get the same points from the same client in the same run: 4 runs x 50 steps x 720
points (18 sources x 40 keys), 1,000 points a request (MLflow's ``log-batch`` limit), 4 client
threads. Triune runs as ``control/launcher.py up`` starts it (one daphne process) on a fresh
database, and the points go to ``POST /api/v1/runs/<id>/metrics/`` with each run's run-scoped
token; MLflow runs as ``mlflow server --workers 1`` on a fresh PostgreSQL database of its own, and a
point ``(step, source, key)`` is the metric ``<key>/<source>`` at that step, so both store 720
series a run. Prints points/s of each, the ratio, p50/p95 request latency, and the rows counted
back from each database (nothing may be lost).

    .venv/bin/python bench/bench_ingest.py [--quick] [--rounds 3]

Needs the ``[bench]`` extra: MLflow's tracking server as ``mlflow-skinny`` plus the server's own
dependencies (the full ``mlflow`` package wants pyarrow < 26, and this project pins 26), PostgreSQL
on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379, database 11;
``BENCH_PG_URL`` and ``BENCH_REDIS_URL`` point elsewhere. The databases are created for the run
and dropped after it (``--keep`` keeps them); each server is stopped by its PID. On a machine
shared with other work, ``--rounds N`` repeats both sides, alternating which goes first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from control.embedded import free_port, port_open  # noqa: E402

PG_URL = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
# A database number of its own, away from the tests' (15) and an installation's (0).
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")

SOURCES = [
    "synth_math", "synth_science", "synth_chart", "synth_puzzle", "synth_counting", "synth_detection",
    "synth_grounding", "synth_ocr", "mm_math", "geometry3k", "scienceqa", "chartqa", "puzzlevqa",
    "clevr_count", "coco_det", "refcoco", "textvqa", "docvqa",
]  # fmt: skip
GROUPS = ["reward", "response_length", "actor", "critic", "perf", "detection", "eval", "timing"]
NAMES = ["mean", "max", "min", "std", "clip_ratio"]
KEYS = [f"{group}/{name}" for group in GROUPS for name in NAMES]  # 40 keys


@dataclass(frozen=True)
class Request:
    run: int  # index of the run in the benchmark
    path: str
    body: bytes
    points: int


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float]
    points: int
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.points / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def make_points(runs: int, steps: int, seed: int) -> list[list[tuple[int, str, str, float]]]:
    """Per run, every (step, source, key, value) in the order a trainer logs them."""
    rng = random.Random(seed)
    return [
        [(step, source, key, rng.random()) for step in range(steps) for source in SOURCES for key in KEYS]
        for _ in range(runs)
    ]


def chunks(items: list, size: int) -> list[list]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def interleave(per_run: list[list[Request]]) -> list[Request]:
    """Requests round-robin over the runs, so the client threads write to all runs at once."""
    out = []
    for i in range(max(len(r) for r in per_run)):
        out.extend(r[i] for r in per_run if i < len(r))
    return out


def triune_requests(points, run_ids: list[int], batch: int) -> list[Request]:
    per_run = []
    for n, (run_points, run_id) in enumerate(zip(points, run_ids, strict=True)):
        per_run.append(
            [
                Request(
                    n,
                    f"/api/v1/runs/{run_id}/metrics/",
                    json.dumps(
                        {
                            "points": [
                                {"step": s, "source": src, "key": k, "value": v} for s, src, k, v in part
                            ]
                        }
                    ).encode(),
                    len(part),
                )
                for part in chunks(run_points, batch)
            ]
        )
    return interleave(per_run)


def mlflow_requests(points, run_ids: list[str], batch: int) -> list[Request]:
    now = int(time.time() * 1000)
    per_run = []
    for n, (run_points, run_id) in enumerate(zip(points, run_ids, strict=True)):
        per_run.append(
            [
                Request(
                    n,
                    "/api/2.0/mlflow/runs/log-batch",
                    json.dumps(
                        {
                            "run_id": run_id,
                            "metrics": [
                                {"key": f"{k}/{src}", "value": v, "timestamp": now + s, "step": s}
                                for s, src, k, v in part
                            ],
                        }
                    ).encode(),
                    len(part),
                )
                for part in chunks(run_points, batch)
            ]
        )
    return interleave(per_run)


def drive(name: str, port: int, requests: list[Request], headers: list[dict], threads: int) -> Phase:
    """Send ``requests`` from ``threads`` keep-alive connections; ``headers[run]`` goes with each."""
    work: queue.Queue[Request] = queue.Queue()
    for request in requests:
        work.put(request)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        try:
            while True:
                try:
                    request = work.get_nowait()
                except queue.Empty:
                    break
                start = time.perf_counter()
                conn.request(
                    "POST",
                    request.path,
                    body=request.body,
                    headers={"Content-Type": "application/json", **headers[request.run]},
                )
                response = conn.getresponse()
                body = response.read()
                mine.append(time.perf_counter() - start)
                if response.status != 200:
                    with lock:
                        errors.append(f"{response.status} {body[:300]!r}")
        finally:
            conn.close()
            with lock:
                latencies.extend(mine)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    return Phase(name, elapsed, latencies, sum(r.points for r in requests), errors)


def call_json(port: int, path: str, payload: dict, headers: dict | None = None) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        body = json.dumps(payload).encode()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"bench: POST {path} answered {response.status}: {data[:500]!r}")
        return json.loads(data)
    finally:
        conn.close()


class Server:
    """A server process in a session of its own, stopped by its PID (and its process group)."""

    def __init__(self, name: str, command: list[str], env: dict, port: int, log: Path) -> None:
        self.name, self.port, self.log = name, port, log
        self.out = log.open("wb")
        self.proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while not port_open("127.0.0.1", self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                raise SystemExit(f"bench: {self.name} did not start:\n{tail}")
            time.sleep(0.2)

    def stop(self) -> None:
        # The group led by the PID we started: mlflow's server runs uvicorn in a child process.
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
            except ProcessLookupError:
                pass
        else:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)  # children left behind by a parent that exited
            except ProcessLookupError:
                pass
        self.out.close()


def profile_start(pid: int, out: Path) -> subprocess.Popen:
    """py-spy sampling ``pid`` into ``out`` (collapsed stacks) until it gets SIGINT."""
    py_spy = Path(sys.executable).parent / "py-spy"
    spy = subprocess.Popen(
        [str(py_spy), "record", "--format", "raw", "--rate", "200", "-o", str(out), "-p", str(pid)]
    )
    time.sleep(1.0)  # attached before the first request
    return spy


def pg_admin():
    import psycopg

    return psycopg.connect(f"{PG_URL}/postgres", autocommit=True)


def database_create(name: str) -> str:
    with pg_admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return f"{PG_URL}/{name}"


def database_drop(name: str) -> None:
    with pg_admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def count_rows(url: str, sql: str, params: tuple) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(sql, params).fetchone()[0]


def bench_sources(project, names: list[str]) -> list:
    """Data-source rows of ``project`` named ``names``. In the product they come from an upload;
    a metrics benchmark needs only the rows."""
    from control.models import Dataset, DatasetVersion, DataSource

    dataset = Dataset.objects.create(project=project, name="bench")
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, content_hash="0" * 64, storage_uri="file:///nonexistent"
    )
    return [
        DataSource.objects.create(
            project=project, dataset_version=version, name=name, verifier="mathverify", task_type="math"
        )
        for name in names
    ]


def triune_world(runs: int) -> tuple[list[int], list[str]]:
    """Migrate the fresh database and create a user, a project, the runs and a run-scoped token each."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connections

    from control.services.projects import project_create
    from control.services.runs import SourceWeight, run_create
    from control.services.tokens import api_token_create

    user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(12))
    project = project_create(user=user, name="ingest bench")
    sources = bench_sources(project, SOURCES)
    run_ids, tokens = [], []
    for n in range(runs):
        run = run_create(
            project=project,
            user=user,
            name=f"bench {n}",
            sources=[SourceWeight(source, 1.0) for source in sources],
        )
        _, raw = api_token_create(user=user, name=f"run {run.pk}", run=run)
        run_ids.append(run.pk)
        tokens.append(raw)
    connections.close_all()
    return run_ids, tokens


def mlflow_world(port: int, runs: int) -> list[str]:
    api = "/api/2.0/mlflow"
    experiment = call_json(port, f"{api}/experiments/create", {"name": "ingest bench"})["experiment_id"]
    now = int(time.time() * 1000)
    return [
        call_json(
            port,
            f"{api}/runs/create",
            {"experiment_id": experiment, "run_name": f"bench {n}", "start_time": now},
        )["run"]["info"]["run_id"]
        for n in range(runs)
    ]


def report(name: str, phases: list[Phase], counted: int, expected: int) -> float:
    """One line for one side (all its rounds together); returns its points/s."""
    total = Phase(name, sum(p.seconds for p in phases), [t for p in phases for t in p.latencies],
                  sum(p.points for p in phases), [e for p in phases for e in p.errors])  # fmt: skip
    print(
        f"{name:<8} {total.rate:>9,.0f} points/s  {total.seconds:6.2f} s  "
        f"p50 {total.percentile(0.5) * 1e3:7.1f} ms  p95 {total.percentile(0.95) * 1e3:7.1f} ms  "
        f"rows counted back {counted:,}/{expected:,}  errors {len(total.errors)}"
    )
    for error in total.errors[:3]:
        print(f"    {error}")
    return total.rate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 steps instead of 50 (14,400 points a side)")
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--batch", type=int, default=1000, help="points a request (MLflow allows 1,000)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="repeat both sides, alternating which goes first"
    )
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    parser.add_argument("--profile", type=Path, help="py-spy's collapsed stacks of the Triune server here")
    args = parser.parse_args()
    steps = 5 if args.quick else args.steps
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        raise SystemExit("bench: no mlflow next to this Python; install the [bench] extra")

    tag = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-ingest-{tag}-"))
    tri_db, mlf_db = f"bench_ingest_triune_{tag}", f"bench_ingest_mlflow_{tag}"
    tri_url, mlf_url = database_create(tri_db), database_create(mlf_db)
    split = urlsplit(mlf_url)
    mlf_store = urlunsplit(split._replace(scheme="postgresql+psycopg"))
    env = {
        **os.environ,
        "DATABASE_URL": tri_url,
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "control.settings",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "TRIUNE_DATA_DIR": str(workdir / "triune"),
        "TRIUNE_CHANNEL_PREFIX": f"bench-ingest-{tag}",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # Background jobs (LLM judges, trace cleanup) are no part of metric ingest.
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    django_env = ["DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "TRIUNE_DATA_DIR"]
    os.environ.update({name: env[name] for name in [*django_env, "TRIUNE_CHANNEL_PREFIX"]})
    servers: list[Server] = []
    try:
        # Each round writes to runs of its own; the last run of each side takes the warm-up requests.
        total_runs = args.runs * args.rounds + 1
        run_ids, tokens = triune_world(total_runs)
        tri_port, mlf_port = free_port(), free_port()
        daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(tri_port),
                  "control.asgi:application"]  # fmt: skip
        servers.append(Server("daphne", daphne, env, tri_port, workdir / "daphne.log"))
        mlflow = [
            str(Path(sys.executable).parent / "mlflow"), "server", "--backend-store-uri", mlf_store,
            "--default-artifact-root", (workdir / "mlartifacts").as_uri(), "--host", "127.0.0.1",
            "--port", str(mlf_port), "--workers", "1",
        ]  # fmt: skip
        servers.append(Server("mlflow server", mlflow, env, mlf_port, workdir / "mlflow.log"))
        for server in servers:
            server.wait_ready()
        mlf_runs = mlflow_world(mlf_port, total_runs)
        tri_headers = [{"Authorization": f"Bearer {t}"} for t in tokens]

        warm = make_points(1, 2, args.seed + 1)
        drive("warm-up", tri_port, triune_requests(warm, run_ids[-1:], args.batch), tri_headers[-1:], 1)
        drive("warm-up", mlf_port, mlflow_requests(warm, mlf_runs[-1:], args.batch), [{}], 1)

        points = make_points(args.runs, steps, args.seed)
        expected = args.runs * steps * len(SOURCES) * len(KEYS)
        tri_phases: list[Phase] = []
        mlf_phases: list[Phase] = []
        for r in range(args.rounds):
            mine = slice(r * args.runs, (r + 1) * args.runs)
            # Bodies are encoded before the clock starts: the client shares the machine's cores.
            tri_all = triune_requests(points, run_ids[mine], args.batch)
            mlf_all = mlflow_requests(points, mlf_runs[mine], args.batch)

            sides = [
                ("triune", tri_port, tri_all, tri_headers[mine], tri_phases),
                ("mlflow", mlf_port, mlf_all, [{}] * args.runs, mlf_phases),
            ]
            # Alternate which side goes first, so a change in the machine's load hits both alike.
            for name, port, requests, headers, phases in sides if r % 2 == 0 else sides[::-1]:
                spy = None
                if name == "triune" and args.profile and not phases:
                    spy = profile_start(servers[0].proc.pid, args.profile)
                phases.append(drive(name, port, requests, headers, args.threads))
                if spy is not None:
                    spy.send_signal(signal.SIGINT)
                    spy.wait(timeout=60)
            if args.rounds > 1:
                print(f"round {r + 1}: triune {tri_phases[-1].rate:,.0f} points/s, "
                      f"mlflow {mlf_phases[-1].rate:,.0f} points/s")  # fmt: skip

        measured = run_ids[: args.runs * args.rounds]
        tri_rows = count_rows(
            tri_url, "SELECT count(*) FROM control_metricpoint WHERE run_id = ANY(%s)", (measured,)
        )
        mlf_rows = count_rows(
            mlf_url,
            "SELECT count(*) FROM metrics WHERE run_uuid = ANY(%s)",
            (mlf_runs[: args.runs * args.rounds],),
        )
        expected_all = expected * args.rounds
        rounds = f", {args.rounds} rounds" if args.rounds > 1 else ""
        print(
            f"metric ingest over HTTP into PostgreSQL: {args.runs} runs x {steps} steps x "
            f"{len(SOURCES) * len(KEYS)} points ({len(SOURCES)} sources x {len(KEYS)} keys) = {expected:,} "
            f"points a side{rounds}, {args.batch} a request, {args.threads} client threads, "
            "one server process each"
        )
        tri_rate = report("triune", tri_phases, tri_rows, expected_all)
        mlf_rate = report("mlflow", mlf_phases, mlf_rows, expected_all)
        print(f"ratio: triune {tri_rate / mlf_rate:.2f}x the points/s of mlflow")
        errors = any(p.errors for p in tri_phases + mlf_phases)
        lost = tri_rows != expected_all or mlf_rows != expected_all or errors
        if lost:
            print("bench: points were lost or refused (see above)")
        return 1 if lost else 0
    finally:
        for server in reversed(servers):
            server.stop()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            database_drop(tri_db)
            database_drop(mlf_db)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench: kept databases {tri_db}, {mlf_db} and logs in {workdir}")


if __name__ == "__main__":
    sys.exit(main())

"""Launch latency: from ``POST /api/v1/runs/`` to the run's first metric in the database, and to
``running``, on the local Ray head that ``./triune up`` starts, for the tiny preset (median of N).

Usage: python bench/bench_launch.py [--runs 5] [--port PORT]

Starts ``./triune up`` (embedded PostgreSQL and Redis, its own Ray head) in a temporary data
directory, makes a token with ``./triune token``, then launches N 2-step runs of
``tiny-cpu-demo`` on the seeded Demo project, one after the other. The baseline, measured in the
same run: the same trainer started directly (``python -m trainer train`` on the same synthetic
data, no platform, no Ray) until its first metric line. The ratio is the platform's launch
latency over that baseline: what queuing, the Celery submission, Ray and the HTTP ingest add.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
FAST = {
    "rollout": {"prompts_per_step": 2, "n": 2, "max_response_length": 16},
    "eval": {"every": 0, "before_training": False},
    "checkpoint": {"every": 0},
}
POLL_S = 0.05


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Api:
    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - loopback
            return json.loads(response.read())


def _start_platform(data_dir: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "TRIUNE_DATA_DIR": str(data_dir), "TRIUNE_PORT": str(port), "TRIUNE_RAY_CPUS": "2"}
    for name in ("DATABASE_URL", "REDIS_URL", "RAY_ADDRESS", "TRIUNE_RAY_JOBS_URL"):
        env.pop(name, None)
    log = open(data_dir / "up.log", "wb")
    process = subprocess.Popen(
        [PY, "-m", "control.launcher", "up", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not (data_dir / "run" / "services.json").exists() or not _answers(f"http://127.0.0.1:{port}/"):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("the platform did not start:\n" + (data_dir / "up.log").read_text()[-3000:])
        time.sleep(0.5)
    return process


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def _token(data_dir: Path) -> str:
    env = {**os.environ, "TRIUNE_DATA_DIR": str(data_dir)}
    out = subprocess.run(
        [PY, "-m", "control.launcher", "token", "--name", "bench"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _launch_once(api: Api, project: int, sources: list[int]) -> tuple[float, float]:
    started = time.perf_counter()
    run = api.call(
        "POST",
        "/api/v1/runs/",
        {
            "project": project,
            "name": "launch latency",
            "preset": "tiny-cpu-demo",
            "total_steps": 2,
            "config": FAST,
            "sources": [{"data_source": s} for s in sources],
        },
    )
    first_metric = running = None
    deadline = started + 300
    while first_metric is None or running is None:
        now = time.perf_counter()
        if now > deadline:
            raise SystemExit(f"run {run['id']} did not start within 300 s")
        if first_metric is None and api.call("GET", f"/api/v1/runs/{run['id']}/metrics/")["count"] > 0:
            first_metric = now - started
        body = api.call("GET", f"/api/v1/runs/{run['id']}/")
        if running is None and body["status"] in ("running", "succeeded"):
            running = now - started
        if body["status"] in ("failed", "lost", "cancelled"):
            raise SystemExit(f"run {run['id']} ended {body['status']}: {body['error']}")
        time.sleep(POLL_S)
    while api.call("GET", f"/api/v1/runs/{run['id']}/")["status"] not in ("succeeded", "failed"):
        time.sleep(0.2)
    return first_metric, running


def _direct_once(data: Path, out: Path) -> float:
    """The trainer on its own: process start to the first metric line in metrics.jsonl."""
    overrides = [
        f"data.root={data}",
        "total_steps=2",
        "rollout.prompts_per_step=2",
        "rollout.n=2",
        "rollout.max_response_length=16",
        "eval.every=0",
        "eval.before_training=false",
        "checkpoint.every=0",
        "tracking.console=false",
    ]
    args = [
        PY,
        "-m",
        "trainer",
        "train",
        "--config",
        "tiny-cpu-demo",
        "--threads",
        "1",
        "--output-dir",
        str(out),
    ]
    for item in overrides:
        args += ["--set", item]
    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = out / "metrics.jsonl"
    first = None
    while process.poll() is None or first is None:
        if first is None and metrics.exists() and '"step"' in metrics.read_text():
            first = time.perf_counter() - started
        if process.poll() is not None and first is None:
            raise SystemExit(f"the trainer exited with {process.returncode} before its first metric")
        time.sleep(POLL_S)
    return first


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="triune-bench-launch-"))
    port = args.port or _free_port()
    print(f"starting ./triune up in {work} on port {port} ...", flush=True)
    t0 = time.perf_counter()
    (work / "data").mkdir()
    platform = _start_platform(work / "data", port)
    print(f"platform up in {time.perf_counter() - t0:.1f} s", flush=True)
    try:
        api = Api(f"http://127.0.0.1:{port}", _token(work / "data"))
        project = next(
            p["id"] for p in api.call("GET", "/api/v1/projects/")["results"] if p["name"] == "Demo"
        )
        names = {"synth_counting", "synth_math"}
        listed = api.call("GET", f"/api/v1/data-sources/?project={project}")["results"]
        sources = [s["id"] for s in listed if s["name"] in names]
        platform_runs = [_launch_once(api, project, sources) for _ in range(args.runs)]
    finally:
        os.killpg(platform.pid, signal.SIGINT)
        try:
            platform.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(platform.pid, signal.SIGKILL)
    data = work / "synth"
    subprocess.run(
        [PY, "-m", "trainer", "synth", "--out", str(data), "--per-source", "16", "--image-size", "56"],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    direct = [_direct_once(data, work / f"direct-{i}") for i in range(args.runs)]
    to_metric = statistics.median(r[0] for r in platform_runs)
    to_running = statistics.median(r[1] for r in platform_runs)
    base = statistics.median(direct)
    print(f"\nlaunch latency, median of {args.runs} (tiny-cpu-demo, 2 steps, local Ray head, 2 CPUs):")
    print(
        f"  POST /runs/ -> first metric in the database : {to_metric:6.2f} s  (each: "
        + ", ".join(f"{r[0]:.2f}" for r in platform_runs)
        + ")"
    )
    print(
        f"  POST /runs/ -> running                      : {to_running:6.2f} s  (each: "
        + ", ".join(f"{r[1]:.2f}" for r in platform_runs)
        + ")"
    )
    print(
        f"  baseline: trainer started directly -> first metric line: {base:6.2f} s  (each: "
        + ", ".join(f"{d:.2f}" for d in direct)
        + ")"
    )
    print(
        f"  platform / direct: {to_metric / base:.2f}x"
        f"  (+{to_metric - base:.2f} s for queueing, submission, Ray and HTTP)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

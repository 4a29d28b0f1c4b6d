"""Load and soak: runs streaming metrics while browsers watch, with the web tier scaled to N processes.

Starts the platform as ``./triune up --web-processes N`` starts it (``control.launcher up``: N daphne
processes on one socket, a Celery worker and beat; no Ray head, which metric traffic never touches)
on a fresh PostgreSQL database, then for ``--duration`` seconds:

- ``--runs`` writers, one a run, each post one step of 600 points (15 sources x 40 keys) every
  ``--step-interval`` seconds to ``POST /api/v1/runs/<id>/metrics/`` with the run's run-scoped
  token, on a fresh connection per request as the trainer's HTTP sink does;
- ``--clients`` websocket clients (client i watches run i mod runs) sign in at ``/login/`` as a
  browser does (CSRF token, session cookie) and hold the run page's socket ``/ws/runs/<id>/``.

It reports the sustained points/s (overall and the slowest 30-s window), p50/p95/max ingest request
latency, p50/p95/max ingest-to-websocket latency (the POST sent -> the step's frame read by each
client; one clock, this process's), every error (non-2xx, exceptions, websocket drops, frames that
never came, points missing from the database), and the RSS of every platform process sampled every
``--sample-every`` seconds, with the growth from the first window's mean to the last's (5 minutes
each in a 30-minute soak). PostgreSQL and Redis are the machine's services here, shared with other
work: Redis is reported by the memory of this run's own keys, PostgreSQL by its connections to
this run's database.

``--compare-processes`` instead saturates ingest (``--compare-threads`` writers posting back to
back, the same watchers) for ``--compare-seconds`` after a warm-up, once with 1 web process and
once with 2, each on a fresh database, and prints the points/s of each and the ratio, with the CPU
each part of the platform used (on a small machine the ratio is bounded by its cores).

    .venv/bin/python bench/load_soak.py --quick               # 60 s smoke run
    .venv/bin/python bench/load_soak.py                       # 30-minute soak, 2 web processes
    .venv/bin/python bench/load_soak.py --compare-processes   # 1 vs 2 web processes, saturated

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379, database 11
(``BENCH_PG_URL``, ``BENCH_REDIS_URL``), as ``bench_ingest.py``. Each database is dropped after its
phase (``--keep`` keeps it and the logs) and the platform is stopped by its PID. Results go to
``bench/results/load_soak.json`` (``--quick``: ``load_soak-quick.json``), one section a mode.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import random
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import KEYS, REDIS_URL, SOURCES, Server, count_rows, database_create, database_drop  # noqa: E402

from control.embedded import free_port  # noqa: E402
from control.launcher import web_answers  # noqa: E402

STEP_SOURCES = SOURCES[:15]  # 15 sources x 40 keys = 600 points a step, the size DESIGN.md plans for
RESULTS = ROOT / "bench" / "results"
PASSWORD = "soak-" + secrets.token_urlsafe(12)
READY_S = 240
SETTLE_S = 8  # after the first answer, for the other web processes to finish importing Django
DRAIN_S = 10  # after the writers stop, for the last frames to arrive

# Run in a subprocess against the phase's database (this process never sets Django up, so each
# phase can have a database of its own): bench_ingest's world, and a password for the watchers.
WORLD = """
import json, os, sys
sys.path.insert(0, "bench")
from bench_ingest import triune_world
run_ids, tokens = triune_world(int(sys.argv[1]))
from django.contrib.auth import get_user_model
user = get_user_model().objects.get(username="bench")
user.set_password(os.environ["BENCH_PASSWORD"])
user.save()
print(json.dumps({"runs": run_ids, "tokens": tokens}))
"""


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1e3:,.0f} ms"


class Platform:
    """``control.launcher up --web-processes N`` on a fresh database and data directory, with runs
    and run tokens; stopped (by the launcher's PID and its process group) and dropped by :meth:`stop`."""

    def __init__(self, *, web_processes: int, runs: int, keep: bool) -> None:
        self.web_processes, self.keep = web_processes, keep
        self.tag = secrets.token_hex(3)
        self.workdir = Path(tempfile.mkdtemp(prefix=f"load-soak-{self.tag}-"))
        self.db = f"bench_soak_{self.tag}"
        self.db_url = database_create(self.db)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.channel_prefix = f"bench-soak-{self.tag}"
        self.queue = f"bench-soak-{self.tag}"
        self.env = {
            **os.environ,
            "DATABASE_URL": self.db_url,
            "REDIS_URL": REDIS_URL,
            "DJANGO_SETTINGS_MODULE": "control.settings",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "TRIUNE_DATA_DIR": str(self.workdir / "data"),
            "TRIUNE_CHANNEL_PREFIX": self.channel_prefix,
            "CELERY_TASK_DEFAULT_QUEUE": self.queue,
            "TRIUNE_RAY": "0",
            "TRIUNE_SEED_DEMO": "0",
            "TRIUNE_ADMIN_PASSWORD": secrets.token_urlsafe(12),
            "BENCH_PASSWORD": PASSWORD,
            "PYTHONPATH": str(ROOT),
        }
        self.server: Server | None = None
        try:
            world = subprocess.run(
                [sys.executable, "-c", WORLD, str(runs)],
                cwd=ROOT,
                env=self.env,
                capture_output=True,
                text=True,
            )
            if world.returncode != 0:
                raise SystemExit(f"load_soak: could not create the runs:\n{world.stderr[-3000:]}")
            made = json.loads(world.stdout.strip().splitlines()[-1])
            self.run_ids: list[int] = made["runs"]
            self.tokens: list[str] = made["tokens"]
            command = [sys.executable, "-m", "control.launcher", "up", "--port", str(self.port),
                       "--web-processes", str(web_processes)]  # fmt: skip
            self.server = Server("./triune up", command, self.env, self.port, self.workdir / "up.log")
            deadline = time.monotonic() + READY_S
            while not web_answers("127.0.0.1", self.port, timeout=1.0):
                if self.server.proc.poll() is not None or time.monotonic() > deadline:
                    tail = self.server.log.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"load_soak: the platform did not start:\n{tail}")
                time.sleep(0.2)
            time.sleep(SETTLE_S)
        except BaseException:
            self.stop()
            raise

    @property
    def pid(self) -> int:
        assert self.server is not None
        return self.server.proc.pid

    def alive(self) -> bool:
        return self.server is not None and self.server.proc.poll() is None

    def rows(self) -> int:
        return count_rows(
            self.db_url, "SELECT count(*) FROM control_metricpoint WHERE run_id = ANY(%s)", (self.run_ids,)
        )

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        try:
            import redis

            client = redis.Redis.from_url(REDIS_URL)
            for pattern in (f"{self.channel_prefix}*", f"{self.queue}*", f"_kombu.binding*.{self.queue}"):
                for key in client.scan_iter(match=pattern, count=1000):
                    client.delete(key)
        except Exception as exc:  # noqa: BLE001 - leftovers expire; say so and go on
            print(f"load_soak: could not remove this run's Redis keys: {exc}")
        if self.keep:
            print(f"load_soak: kept database {self.db} and logs in {self.workdir}")
            return
        database_drop(self.db)
        shutil.rmtree(self.workdir, ignore_errors=True)


# --- the writers -----------------------------------------------------------------------------------


@dataclass
class Post:
    run: int  # index of the run in the phase
    step: int
    start: float  # time.monotonic() when the request was sent
    end: float
    status: int  # 0: no answer (an exception)
    points: int
    error: str = ""


@dataclass
class Writers:
    """One thread a run, each posting a step of 600 points every ``interval`` seconds (0: back to back)."""

    port: int
    run_ids: list[int]
    tokens: list[str]
    interval: float
    posts: list[Post] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def body(self, step: int, rng: random.Random) -> bytes:
        points = [
            {"step": step, "source": source, "key": key, "value": rng.random()}
            for source in STEP_SOURCES
            for key in KEYS
        ]
        return json.dumps({"points": points}).encode()

    def write(self, n: int, stop_at: float) -> None:
        rng = random.Random(n)
        path = f"/api/v1/runs/{self.run_ids[n]}/metrics/"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.tokens[n]}"}
        # Runs are independent: their steps are spread over the interval, not sent all at once.
        first = time.monotonic() + n * self.interval / len(self.run_ids)
        step = 0
        while True:
            due = first + step * self.interval
            if due > time.monotonic():
                time.sleep(max(0.0, min(due, stop_at) - time.monotonic()))
            if time.monotonic() >= stop_at:
                return
            body = self.body(step, rng)
            count = len(KEYS) * len(STEP_SOURCES)
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            start = time.monotonic()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
                post = Post(n, step, start, time.monotonic(), response.status, count)
                if response.status != 200:
                    post.error = f"{response.status} {data[:200]!r}"
            except Exception as exc:  # noqa: BLE001 - every failure is counted and shown
                post = Post(n, step, start, time.monotonic(), 0, count, f"{type(exc).__name__}: {exc}")
            finally:
                conn.close()
            with self.lock:
                self.posts.append(post)
            step += 1

    def run(self, seconds: float) -> tuple[float, float]:
        """Write for ``seconds``; returns (start, stop) on time.monotonic()."""
        start = time.monotonic()
        stop_at = start + seconds
        threads = [threading.Thread(target=self.write, args=(n, stop_at)) for n in range(len(self.run_ids))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return start, stop_at


# --- the watchers ----------------------------------------------------------------------------------


@dataclass
class Watchers:
    """``count`` browsers signed in as the runs' owner, each holding one run's websocket, in an
    event loop of their own thread. ``arrivals[i][step]`` = (time read, came in a catch-up frame)."""

    base: str
    port: int
    run_ids: list[int]
    count: int
    arrivals: list[dict[int, tuple[float, bool]]] = field(default_factory=list)
    drops: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.arrivals = [{} for _ in range(self.count)]
        self.loop = asyncio.new_event_loop()
        self.stopping = False
        self.ready = threading.Event()
        self.subscribed = 0
        self.sockets: dict[int, object] = {}
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def run_of(self, client: int) -> int:
        return client % len(self.run_ids)

    def start(self, timeout: float = 120.0) -> None:
        self.thread.start()
        self.tasks = [asyncio.run_coroutine_threadsafe(self.client(i), self.loop) for i in range(self.count)]
        if self.count and not self.ready.wait(timeout):
            raise SystemExit(
                f"load_soak: only {self.subscribed}/{self.count} websockets came up: {self.errors}"
            )

    async def login(self, session) -> None:
        async with session.get(f"{self.base}/login/") as response:
            page = await response.text()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        if token is None:
            raise RuntimeError(f"no CSRF token on /login/ ({response.status})")
        form = {"username": "bench", "password": PASSWORD, "csrfmiddlewaretoken": token.group(1)}
        headers = {"Origin": self.base, "Referer": f"{self.base}/login/"}
        async with session.post(
            f"{self.base}/login/", data=form, headers=headers, allow_redirects=False
        ) as r:
            if r.status != 302:
                raise RuntimeError(f"login answered {r.status}")

    async def client(self, i: int) -> None:
        import aiohttp

        url = f"ws://127.0.0.1:{self.port}/ws/runs/{self.run_ids[self.run_of(i)]}/"
        last = -1
        first = True
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            try:
                await self.login(session)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"client {i}: {type(exc).__name__}: {exc}")
                return
            while not self.stopping:
                try:
                    async with session.ws_connect(url, headers={"Origin": self.base}) as ws:
                        self.sockets[i] = ws
                        await ws.send_json({"type": "catch_up", "after_step": last})
                        async for message in ws:
                            if message.type != aiohttp.WSMsgType.TEXT:
                                break
                            now = time.monotonic()
                            frame = json.loads(message.data)
                            if frame.get("type") != "metrics.points":
                                continue
                            catch_up = bool(frame.get("catch_up"))
                            steps = {p["step"] for p in frame["points"]}
                            for step in steps:
                                self.arrivals[i].setdefault(step, (now, catch_up))
                            last = max([last, *steps])
                            if catch_up and first:
                                first = False
                                self.subscribed += 1
                                if self.subscribed == self.count:
                                    self.ready.set()
                    if not self.stopping:
                        self.drops.append(f"client {i}: closed ({ws.close_code})")
                except Exception as exc:  # noqa: BLE001 - a drop is counted, and the page reconnects
                    if not self.stopping:
                        self.drops.append(f"client {i}: {type(exc).__name__}: {exc}")
                if not self.stopping:
                    await asyncio.sleep(1.0)

    def stop(self) -> None:
        self.stopping = True

        async def close_all() -> None:
            for ws in list(self.sockets.values()):
                await ws.close()

        asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(30)
        for task in getattr(self, "tasks", []):
            try:
                task.result(30)
            except Exception as exc:  # noqa: BLE001
                self.errors.append(f"{type(exc).__name__}: {exc}")
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# --- the sampler -----------------------------------------------------------------------------------


class Sampler:
    """RSS and CPU time of every platform process (the launcher and its descendants), the memory of
    this run's Redis keys and the connections to its database, every ``every`` seconds."""

    def __init__(self, platform: Platform, every: float) -> None:
        self.platform, self.every = platform, every
        self.samples: list[dict] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def processes(self) -> dict[str, object]:
        import psutil

        root = psutil.Process(self.platform.pid)
        named: dict[str, object] = {"launcher": root}
        webs, pools = [], []
        for proc in root.children(recursive=True):
            try:
                cmd = " ".join(proc.cmdline())
                parent = proc.ppid()
            except psutil.Error:
                continue
            if "daphne" in cmd:
                webs.append(proc)
            elif "celery" in cmd and " beat" in cmd:
                named["celery beat"] = proc
            elif "celery" in cmd and " worker" in cmd and parent == root.pid:
                named["celery worker"] = proc
            elif "celery" in cmd:
                pools.append(proc)
        for n, proc in enumerate(sorted(webs, key=lambda p: p.pid)):
            named[f"web {n + 1}"] = proc
        for n, proc in enumerate(sorted(pools, key=lambda p: p.pid)):
            named[f"worker pool {n + 1}"] = proc
        named["bench client"] = psutil.Process()
        return named

    def redis_keys(self) -> tuple[int, int]:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        count = size = 0
        for pattern in (f"{self.platform.channel_prefix}*", f"{self.platform.queue}*"):
            for key in client.scan_iter(match=pattern, count=1000):
                count += 1
                size += client.memory_usage(key) or 0
        return count, size

    def pg_connections(self) -> int:
        return count_rows(
            self.platform.db_url,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
            (self.platform.db,),
        )

    @staticmethod
    def services_cpu() -> dict[str, float]:
        """CPU seconds of the machine's PostgreSQL and Redis servers (shared with any other work).

        PostgreSQL forks a backend a connection, and the platform opens one a request
        (CONN_MAX_AGE=0): the backends gone by now are counted in the postmaster's children times.
        """
        import psutil

        cpu = {"postgresql (server)": 0.0, "redis (server)": 0.0}
        for proc in psutil.process_iter(["name", "ppid"]):
            name = proc.info["name"] or ""
            try:
                if name.startswith("postgres"):
                    times = proc.cpu_times()
                    cpu["postgresql (server)"] += times.user + times.system
                    parent = psutil.Process(proc.info["ppid"]).name() if proc.info["ppid"] else ""
                    if not parent.startswith("postgres"):  # the postmaster
                        cpu["postgresql (server)"] += times.children_user + times.children_system
                elif name.startswith("redis-server"):
                    times = proc.cpu_times()
                    cpu["redis (server)"] += times.user + times.system
            except psutil.Error:
                continue
        return cpu

    def sample(self) -> None:
        import psutil

        now = time.monotonic()
        rss, cpu = {}, {}
        for name, proc in self.processes().items():
            try:
                rss[name] = proc.memory_info().rss / 2**20
                times = proc.cpu_times()
                cpu[name] = times.user + times.system
            except psutil.Error:
                continue
        cpu.update(self.services_cpu())
        keys, size = self.redis_keys()
        self.samples.append(
            {
                "t": now,
                "rss_mb": rss,
                "cpu_s": cpu,
                "machine_cpu_s": sum(psutil.cpu_times()[:3]),  # user + nice + system, all cores
                "redis_keys": keys,
                "redis_key_bytes": size,
                "pg_connections": self.pg_connections(),
            }
        )

    def loop(self) -> None:
        while not self.done.is_set():
            started = time.monotonic()
            try:
                self.sample()
                last = self.samples[-1]
                rss = ", ".join(f"{name} {mb:.0f}" for name, mb in sorted(last["rss_mb"].items()))
                print(f"  [{last['t'] - self.samples[0]['t']:6.0f} s] RSS MB: {rss}", flush=True)
            except Exception as exc:  # noqa: BLE001 - a missed sample is no reason to stop the soak
                print(f"load_soak: sample failed: {exc}", flush=True)
            self.done.wait(max(0.0, self.every - (time.monotonic() - started)))

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.done.set()
        self.thread.join(60)
        self.sample()  # one at the end, for the CPU used up to here


def websockets_per_web(processes: dict[str, object], ports: set[int]) -> dict[str, int]:
    """How many of the watchers' connections (by their local ``ports``) each web process holds."""
    import psutil

    held = {}
    for name, proc in processes.items():
        if name.startswith("web "):
            try:
                conns = proc.net_connections("tcp")
            except psutil.Error:
                continue
            held[name] = sum(1 for c in conns if c.raddr and c.raddr.port in ports)
    return held


# --- one phase -------------------------------------------------------------------------------------


def cpu_shares(samples: list[dict], start: float, stop: float) -> dict[str, float]:
    """Cores each process used between the samples nearest ``start`` and ``stop``."""
    a = min(samples, key=lambda s: abs(s["t"] - start))
    b = min(samples, key=lambda s: abs(s["t"] - stop))
    seconds = b["t"] - a["t"]
    if seconds <= 0:
        return {}
    shares = {name: (b["cpu_s"][name] - a["cpu_s"].get(name, 0.0)) / seconds for name in b["cpu_s"]}
    shares["machine (all processes)"] = (b["machine_cpu_s"] - a["machine_cpu_s"]) / seconds
    return shares


def memory_growth(samples: list[dict], start: float, stop: float, window: float) -> dict[str, dict]:
    """Per process: mean RSS of the first and the last ``window`` seconds of [start, stop], growth, max."""
    out = {}
    names = sorted({name for s in samples for name in s["rss_mb"]})
    within = [s for s in samples if start - 1 <= s["t"] <= stop + 1]
    head = [s for s in within if s["t"] <= start + window]
    tail = [s for s in within if s["t"] >= stop - window]
    for name in names:
        first = [s["rss_mb"][name] for s in head if name in s["rss_mb"]]
        last = [s["rss_mb"][name] for s in tail if name in s["rss_mb"]]
        every = [s["rss_mb"][name] for s in within if name in s["rss_mb"]]
        if not first or not last:
            continue
        a, b = statistics.mean(first), statistics.mean(last)
        out[name] = {"first_mb": a, "last_mb": b, "growth_mb": b - a, "growth_pct": 100 * (b - a) / a,
                     "max_mb": max(every)}  # fmt: skip
    for key in ("redis_key_bytes", "pg_connections"):
        first = [s[key] for s in head]
        last = [s[key] for s in tail]
        if first and last:
            a, b = statistics.mean(first), statistics.mean(last)
            out[key] = {"first": a, "last": b, "growth": b - a, "max": max(s[key] for s in within)}
    return out


def phase(
    *,
    web_processes: int,
    runs: int,
    clients: int,
    interval: float,
    seconds: float,
    warmup: float,
    sample_every: float,
    window: float,
    keep: bool,
) -> dict:
    """Start the platform, write and watch for ``warmup`` + ``seconds``, measure the last ``seconds``."""
    mode = f"a step every {interval:g} s a run" if interval else "back to back"
    print(f"\n== {web_processes} web process(es): {runs} runs x 600 points, {mode}, {clients} websocket "
          f"clients, {warmup + seconds:.0f} s ({warmup:.0f} s warm-up)", flush=True)  # fmt: skip
    platform = Platform(web_processes=web_processes, runs=runs, keep=keep)
    sampler = watchers = None
    try:
        sampler = Sampler(platform, sample_every)
        sampler.start()
        watchers = Watchers(platform.base, platform.port, platform.run_ids, clients)
        watchers.start()
        writers = Writers(platform.port, platform.run_ids, platform.tokens, interval)
        began, ended = writers.run(warmup + seconds)
        measured_from = began + warmup
        time.sleep(DRAIN_S)
        alive = platform.alive()
        held = websockets_per_web(
            sampler.processes(), {ws.get_extra_info("sockname")[1] for ws in watchers.sockets.values()}
        )
        watchers.stop()
        sampler.stop()
        rows = platform.rows()
    finally:
        if watchers is not None and not watchers.stopping:
            watchers.stop()
        if sampler is not None:
            sampler.done.set()
        platform.stop()

    posts = writers.posts
    ok = [p for p in posts if p.status == 200]
    failed = [p for p in posts if p.status != 200]
    counted = [p for p in ok if measured_from <= p.end <= ended]
    latencies = [p.end - p.start for p in posts if measured_from <= p.start and p.status == 200]
    # The slowest 30-s window of points stored (whole windows within the measured time).
    windows = []
    t = measured_from
    while t + 30 <= ended + 1e-6:
        windows.append(sum(p.points for p in ok if t <= p.end < t + 30) / 30)
        t += 30
    sent = {(p.run, p.step): p for p in posts}
    ws_latencies, missed = [], []
    for i, arrivals in enumerate(watchers.arrivals):
        run = watchers.run_of(i)
        for p in ok:
            if p.run != run:
                continue
            if p.step not in arrivals:
                missed.append(f"client {i}: run {run} step {p.step}")
                continue
            read, catch_up = arrivals[p.step]
            if not catch_up and p.start >= measured_from:
                ws_latencies.append(read - sent[(run, p.step)].start)
    accepted = sum(p.points for p in ok)
    errors = {
        "http_non_2xx": sum(1 for p in failed if p.status),
        "http_exceptions": sum(1 for p in failed if not p.status),
        "websocket_drops": len(watchers.drops),
        "websocket_client_errors": len(watchers.errors),
        "frames_never_read": len(missed),
        "points_missing_in_database": max(0, accepted - rows),
        "platform_exited": int(not alive),
    }
    late = 0
    if interval:
        # A step sent more than one interval after it was due: the platform did not keep up.
        due = {n: began + n * interval / runs for n in range(runs)}
        late = sum(1 for p in posts if p.start - (due[p.run] + p.step * interval) > interval)
    result = {
        "web_processes": web_processes,
        "runs": runs,
        "points_per_step": len(KEYS) * len(STEP_SOURCES),
        "step_interval_s": interval,
        "clients": clients,
        "seconds": seconds,
        "warmup_s": warmup,
        "offered_points_per_s": runs * len(KEYS) * len(STEP_SOURCES) / interval if interval else None,
        "points_per_s": sum(p.points for p in counted) / seconds,
        "slowest_30s_points_per_s": min(windows) if windows else None,
        "requests": len([p for p in posts if p.start >= measured_from]),
        "steps_late": late,
        "ingest_latency_s": {
            "p50": percentile(latencies, 0.5),
            "p95": percentile(latencies, 0.95),
            "max": max(latencies, default=None),
        },
        "ingest_to_websocket_s": {
            "p50": percentile(ws_latencies, 0.5),
            "p95": percentile(ws_latencies, 0.95),
            "max": max(ws_latencies, default=None),
            "frames": len(ws_latencies),
        },
        "errors": errors,
        "error_total": sum(errors.values()),
        "error_examples": [p.error for p in failed[:5]]
        + watchers.drops[:5]
        + watchers.errors[:5]
        + missed[:5],
        "websockets_per_web_process": held,
        "points_accepted": accepted,
        "rows_in_database": rows,
        "memory": memory_growth(sampler.samples, measured_from, ended, window),
        "cpu_cores": cpu_shares(sampler.samples, measured_from, ended),
        "samples": [{**s, "t": round(s["t"] - began, 1)} for s in sampler.samples],
    }
    return result


# --- reports ---------------------------------------------------------------------------------------


def print_phase(r: dict) -> None:
    lat, ws = r["ingest_latency_s"], r["ingest_to_websocket_s"]
    offered = f" (offered {r['offered_points_per_s']:,.0f})" if r["offered_points_per_s"] else ""
    slowest = r["slowest_30s_points_per_s"]
    rows = [
        ("web processes", f"{r['web_processes']}"),
        ("points/s sustained", f"{r['points_per_s']:,.0f}{offered}"),
        ("slowest 30-s window", "-" if slowest is None else f"{slowest:,.0f} points/s"),
        ("requests (600 points)", f"{r['requests']:,}; steps late {r['steps_late']}"),
        ("ingest p50 / p95 / max", f"{ms(lat['p50'])} / {ms(lat['p95'])} / {ms(lat['max'])}"),
        (
            "ingest->websocket p50 / p95 / max",
            f"{ms(ws['p50'])} / {ms(ws['p95'])} / {ms(ws['max'])} ({ws['frames']:,} frames)",
        ),  # fmt: skip
        ("errors", f"{r['error_total']}  " + ", ".join(f"{k} {v}" for k, v in r["errors"].items() if v)),
        ("points accepted / rows", f"{r['points_accepted']:,} / {r['rows_in_database']:,}"),
        ("websockets held", ", ".join(f"{k}: {v}" for k, v in r["websockets_per_web_process"].items())),
    ]
    for name, value in rows:
        print(f"  {name:<36} {value}")
    for example in r["error_examples"]:
        print(f"    {example}")
    print(f"  {'process':<22} {'first MB':>9} {'last MB':>9} {'growth':>14} {'max MB':>8} {'cores':>6}")
    for name, m in r["memory"].items():
        if "first_mb" not in m:
            continue
        cores = r["cpu_cores"].get(name)
        print(f"  {name:<22} {m['first_mb']:9.1f} {m['last_mb']:9.1f} "
              f"{m['growth_mb']:+7.1f} ({m['growth_pct']:+4.1f}%) {m['max_mb']:8.1f} "
              f"{'' if cores is None else f'{cores:6.2f}'}")  # fmt: skip
    for name in ("postgresql (server)", "redis (server)", "machine (all processes)"):
        if name in r["cpu_cores"]:
            print(f"  {name:<22} {'':>9} {'':>9} {'':>14} {'':>8} {r['cpu_cores'][name]:6.2f}")
    if "redis_key_bytes" in r["memory"]:
        k, c = r["memory"]["redis_key_bytes"], r["memory"]["pg_connections"]
        print(f"  redis keys of this run  {k['first'] / 1024:9.1f} kB -> {k['last'] / 1024:.1f} kB "
              f"(max {k['max'] / 1024:.1f} kB); PostgreSQL connections {c['first']:.1f} -> {c['last']:.1f} "
              f"(max {c['max']})")  # fmt: skip


def save(out: Path, section: str, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(out.read_text())
    except (OSError, ValueError):
        data = {}
    data[section] = {
        "machine": {"cpus": os.cpu_count(), "when": time.strftime("%Y-%m-%d %H:%M:%S")},
        **result,
    }
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"\nwrote {out} ({section})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="60 s instead of 30 minutes (a smoke run)")
    parser.add_argument("--duration", type=float, default=1800.0, help="seconds of soak (default 1800)")
    parser.add_argument("--runs", type=int, default=4, help="writers, one a run (default 4)")
    parser.add_argument("--clients", type=int, default=8, help="websocket clients (default 8)")
    parser.add_argument("--step-interval", type=float, default=2.0, help="seconds between a run's steps")
    parser.add_argument("--web-processes", type=int, default=2)
    parser.add_argument("--sample-every", type=float, default=30.0, help="seconds between RSS samples")
    parser.add_argument("--compare-processes", action="store_true", help="1 vs 2 web processes, saturated")
    parser.add_argument("--compare-seconds", type=float, default=60.0)
    parser.add_argument("--compare-threads", type=int, default=8, help="writers posting back to back")
    parser.add_argument("--compare-rounds", type=int, default=2, help="rounds, alternating which goes first")
    parser.add_argument("--out", type=Path, help="JSON results (default bench/results/load_soak.json)")
    parser.add_argument("--keep", action="store_true", help="keep the databases and the logs")
    args = parser.parse_args()
    out = args.out or RESULTS / ("load_soak-quick.json" if args.quick else "load_soak.json")

    if args.compare_processes:
        seconds = 20.0 if args.quick else args.compare_seconds
        rounds: dict[int, list[dict]] = {1: [], 2: []}
        for r in range(args.compare_rounds):
            # Alternate which goes first, so a change in the machine's load hits both alike.
            for n in (1, 2) if r % 2 == 0 else (2, 1):
                result = phase(
                    web_processes=n, runs=args.compare_threads, clients=args.clients, interval=0.0,
                    seconds=seconds, warmup=10.0, sample_every=min(5.0, args.sample_every),
                    window=seconds / 4, keep=args.keep,
                )  # fmt: skip
                print_phase(result)
                rounds[n].append(result)
        one = statistics.mean(x["points_per_s"] for x in rounds[1])
        two = statistics.mean(x["points_per_s"] for x in rounds[2])
        ratio = two / one if one else float("nan")
        print(f"\ningest saturated ({args.compare_threads} writers back to back, {seconds:.0f} s measured, "
              f"{args.compare_rounds} rounds, {os.cpu_count()} CPU cores):")  # fmt: skip
        for n in (1, 2):
            rates = ", ".join(f"{x['points_per_s']:,.0f}" for x in rounds[n])
            ws = ", ".join(ms(x["ingest_to_websocket_s"]["p95"]) for x in rounds[n])
            print(f"  {n} web process(es): {rates} points/s; ingest->websocket p95 {ws}")
        print(f"  ratio 2 / 1 processes: {ratio:.2f}x the points/s")
        save(out, "compare_processes", {"ratio_2_over_1": ratio, "one": rounds[1], "two": rounds[2]})
        return 1 if any(x["error_total"] for x in rounds[1] + rounds[2]) else 0

    seconds = 60.0 if args.quick else args.duration
    window = min(300.0, seconds / 4)
    result = phase(
        web_processes=args.web_processes, runs=args.runs, clients=args.clients, interval=args.step_interval,
        seconds=seconds, warmup=0.0, sample_every=min(args.sample_every, seconds / 12), window=window,
        keep=args.keep,
    )  # fmt: skip
    print(f"\nsoak: {seconds / 60:.0f} min; memory growth: mean of the last {window:.0f} s minus mean "
          f"of the first {window:.0f} s")  # fmt: skip
    print_phase(result)
    save(out, "soak", result)
    return 1 if result["error_total"] else 0


if __name__ == "__main__":
    sys.exit(main())

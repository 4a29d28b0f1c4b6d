"""The live run page in a real browser: ingest-to-chart latency, and the load time of a 1M-point run.

Runs daphne (``control.asgi``) on a free loopback port against a fresh PostgreSQL database and
drives Debian's chromium (headless, through Playwright), signed in as the run's owner.

1. Latency. With the run page open and live, and the marker's chart scrolled into view, the page
   itself posts one step every 200 ms (5 steps/s) to ``POST /api/v1/runs/<id>/metrics/`` with the
   run-scoped token: 15 sources x 40 keys = 600 points plus a marker (``perf/step_time``, global,
   value = the step). A loop on every animation frame reads the marker chart's Plotly data and
   stamps when each step first appears there. Latency = drawn - POST returned, both
   ``performance.now()`` of the same page (one clock). Baseline in the same run: the same page
   polls ``GET /api/v1/runs/<id>/metrics/?after_step=<last>&key=perf/step_time`` every 2 s (the
   way W&B/MLflow pages refresh); latency = the poll's answer - POST returned.
2. Load. A run of 1,000,200 points (1,667 steps x 600), inserted with ``metric_points_ingest`` in
   batches of at most 10,000: time from navigation to the first chart with data, to the first
   screen (every chart in the 1280x800 viewport has data) and to the full page (``#live-state``
   reads "live", which the page sets after every section's history is in and the websocket caught
   up, and every chart has data: those off screen are drawn when the browser is idle); median of 3
   loads. Baseline: the same run's raw points from ``GET /api/v1/runs/<id>/metrics/?page_size=500``
   (the largest the API allows); pages sampled at the start, middle and end, and the total
   extrapolated to all pages (printed as such).

    .venv/bin/python bench/bench_dashboard.py [--quick]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust), Redis on 127.0.0.1:6379 (database 11)
and /usr/bin/chromium. The database is dropped after the run; daphne is stopped by its PID.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import KEYS, REDIS_URL, SOURCES, Server, bench_sources, database_create, database_drop  # noqa: E402

from control.embedded import free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-" + secrets.token_urlsafe(9)
STEP_SOURCES = SOURCES[:15]  # 15 sources x 40 keys = 600 points a step
MARKER = "perf/step_time"
WAIT_MS = 120_000

# Before the page's scripts: every animation frame, the steps newly drawn on the marker's chart,
# the first chart with data, and when the page became live with every chart drawn.
SPY = """
(() => {
  window.__drawn = {};
  window.__firstChart = null;
  window.__screen = null;
  window.__full = null;
  window.__chartAt = {}; // chart key -> when it first had data
  const marker = "__MARKER__";
  function frame() {
    const now = performance.now();
    const div = document.querySelector('.chart[data-key="' + marker + '"]');
    if (div && div.data) {
      for (const trace of div.data) {
        // Steps can land out of order (concurrent posts): read the whole trace when it grew.
        const x = trace.x || [];
        if (trace.__seen === x.length) continue;
        trace.__seen = x.length;
        for (let i = 0; i < x.length; i++) if (window.__drawn[x[i]] === undefined) window.__drawn[x[i]] = now;
      }
    }
    if (window.__full === null) {
      const charts = Array.from(document.querySelectorAll(".chart"));
      const hasData = (c) => c.data && c.data.length > 0;
      const drawn = charts.filter(hasData);
      for (const c of drawn) {
        if (window.__chartAt[c.dataset.key] === undefined) window.__chartAt[c.dataset.key] = now;
      }
      if (window.__firstChart === null && drawn.length) window.__firstChart = now;
      const live = document.getElementById("live-state");
      const isLive = live && live.textContent.trim() === "live";
      if (isLive && charts.length && drawn.length === charts.length) {
        // The first screen: the charts in the viewport once the page is whole, drawn by when the
        // last of them was (the page never scrolls here, and no chart above them comes later).
        const seen = charts.filter((c) => {
          const r = c.getBoundingClientRect();
          return r.width > 0 && r.top < window.innerHeight && r.bottom > 0;
        });
        window.__screen = Math.max(...seen.map((c) => window.__chartAt[c.dataset.key]));
        window.__full = { ms: now, charts: charts.length };
      }
    }
    requestAnimationFrame(frame);
  }
  requestAnimationFrame(frame);
})();
""".replace("__MARKER__", MARKER)

# Posts ``steps`` steps at ``interval`` ms from the page and polls the marker every 2 s meanwhile;
# resolves to {posted: {step: ms}, polled: {step: ms}, errors: [...]}.
DRIVE = """
async ([url, token, sources, keys, marker, first, steps, interval, settle]) => {
  const posted = {}, polled = {}, errors = [];
  let last = first - 1, stop = false;
  async function poll() {
    while (!stop) {
      const started = performance.now();
      try {
        let page = 1;
        for (;;) {
          const query = "?page_size=500&key=" + encodeURIComponent(marker) + "&after_step=" + last;
          const r = await fetch(url + query + "&page=" + page, { credentials: "same-origin" });
          const body = await r.json();
          const now = performance.now();
          for (const p of body.results || []) {
            if (polled[p.step] === undefined) polled[p.step] = now;
            if (p.step > last) last = p.step;
          }
          if (!body.next) break;
          page += 1;
        }
      } catch (err) { errors.push("poll: " + err.message); }
      await new Promise((ok) => setTimeout(ok, Math.max(0, 2000 - (performance.now() - started))));
    }
  }
  const poller = poll();
  const t0 = performance.now();
  const sends = [];
  for (let i = 0; i < steps; i++) {
    const step = first + i;
    const wait = t0 + i * interval - performance.now();
    if (wait > 0) await new Promise((ok) => setTimeout(ok, wait));
    const points = [];
    for (const source of sources) {
      for (const key of keys) points.push({ step, source, key, value: Math.random() });
    }
    points.push({ step, source: "", key: marker, value: step });
    sends.push(fetch(url, {
      method: "POST", credentials: "omit",
      headers: { "Authorization": "Bearer " + token, "Content-Type": "application/json" },
      body: JSON.stringify({ points }),
    }).then(async (r) => {
      posted[step] = performance.now();
      if (r.status !== 200) {
        errors.push("post " + step + ": " + r.status + " " + (await r.text()).slice(0, 200));
      }
    }).catch((err) => errors.push("post " + step + ": " + err.message)));
  }
  await Promise.all(sends);
  await new Promise((ok) => setTimeout(ok, settle));
  stop = true;
  await poller;
  return { posted, polled, errors };
}
"""

# Raw points of a run, 500 a page: times pages ``pages`` (1-based) and reads the page count.
RAW_PAGES = """
async ([url, pages]) => {
  const out = [];
  let count = null;
  for (const page of pages) {
    const started = performance.now();
    const r = await fetch(url + "?page_size=500&page=" + page, { credentials: "same-origin" });
    const body = await r.json();
    out.push({ page, ms: performance.now() - started, n: (body.results || []).length, status: r.status });
    if (body.count !== undefined) count = body.count;
  }
  return { out, count };
}
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def world(big_steps: int):
    """Migrate; a user, a project of 15 sources, a live run (with a run-scoped token) and a big run."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connections

    from control.models import Run
    from control.services.metrics import PointIn, metric_points_ingest
    from control.services.projects import project_create
    from control.services.runs import SourceWeight, run_create
    from control.services.tokens import api_token_create

    user = get_user_model().objects.create_user(username="bench", password=PASSWORD)
    project = project_create(user=user, name="dashboard bench")
    sources = bench_sources(project, STEP_SOURCES)
    runs = []
    for name in ["live", "big"]:
        run = run_create(
            project=project, user=user, name=name, sources=[SourceWeight(s, 1.0) for s in sources]
        )
        Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1, ray_submission_id="bench")
        runs.append(run)
    live, big = runs
    _, token = api_token_create(user=user, name=f"run {live.pk}", run=live)

    started = time.perf_counter()
    batch: list = []
    total = 0
    rng = 0.0
    for step in range(big_steps):
        for source in STEP_SOURCES:
            for key in KEYS:
                rng = (rng * 9301 + 49297) % 233280
                batch.append(PointIn(step, key, rng / 233280, source))
        if len(batch) + 600 > 10_000 or step == big_steps - 1:
            total += metric_points_ingest(run=big, points=batch)
            batch = []
    seconds = time.perf_counter() - started
    big.refresh_from_db()
    connections.close_all()
    return live.pk, token, big.pk, total, seconds


def load_once(context, base: str, run_id: int) -> dict:
    """One load of the run page: ms from navigation to the first chart, the first screen (live, and
    every chart in the viewport drawn) and the full page (every chart drawn), and where it went."""
    page = context.new_page()
    page.add_init_script(SPY)
    try:
        page.goto(f"{base}/runs/{run_id}/")
        page.wait_for_function("() => window.__full !== null && window.__screen !== null", timeout=WAIT_MS)
        out = page.evaluate(
            """() => {
                const nav = performance.getEntriesByType("navigation")[0];
                const api = performance.getEntriesByType("resource")
                    .filter((e) => e.name.includes("/series/"));
                return {
                    first: window.__firstChart, screen: window.__screen, full: window.__full.ms,
                    charts: window.__full.charts, scripts: nav.domContentLoadedEventEnd,
                    requests: api.length, began: Math.min(...api.map((e) => e.startTime)),
                    ended: Math.max(...api.map((e) => e.responseEnd)),
                    bytes: api.reduce((n, e) => n + e.transferSize, 0),
                };
            }"""
        )
        print(
            f"    scripts parsed {out['scripts']:.0f} ms; {out['requests']} series requests"
            f" {out['began']:.0f}-{out['ended']:.0f} ms ({out['bytes'] / 1e6:.1f} MB);"
            f" first chart {out['first']:.0f}, first screen {out['screen']:.0f},"
            f" full page {out['full']:.0f} ms"
        )
        return out
    finally:
        page.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 live steps and a 100,200-point run")
    parser.add_argument("--steps", type=int, default=150, help="live steps at 5 a second")
    parser.add_argument("--big-steps", type=int, default=1667, help="steps of the big run (600 points each)")
    parser.add_argument("--loads", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database and the log")
    args = parser.parse_args()
    steps = 20 if args.quick else args.steps
    big_steps = 167 if args.quick else args.big_steps
    if not os.path.exists(CHROMIUM):
        raise SystemExit(f"bench: {CHROMIUM} is missing")

    tag = secrets.token_hex(3)
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-dashboard-{tag}-"))
    db = f"bench_dashboard_{tag}"
    url = database_create(db)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "REDIS_URL": REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "control.settings",
        "SECRET_KEY": secrets.token_urlsafe(40),
        "TRIUNE_DATA_DIR": str(workdir / "triune"),
        "TRIUNE_CHANNEL_PREFIX": f"bench-dashboard-{tag}",
        "SESSION_COOKIE_SECURE": "0",
        "CSRF_COOKIE_SECURE": "0",
        "DEBUG": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    names = ["DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "TRIUNE_DATA_DIR"]
    os.environ.update({name: env[name] for name in [*names, "TRIUNE_CHANNEL_PREFIX"]})
    server = None
    try:
        live_id, token, big_id, big_points, insert_s = world(big_steps)
        print(f"inserted {big_points:,} points into run {big_id} in {insert_s:.1f} s (metric_points_ingest)")
        port = free_port()
        daphne = [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "control.asgi:application",
        ]
        server = Server("daphne", daphne, env, port, workdir / "daphne.log")
        server.wait_ready()
        base = f"http://127.0.0.1:{port}"

        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            )
            try:
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                login = context.new_page()
                login.goto(base + "/login/")
                login.fill("input[name=username]", "bench")
                login.fill("input[name=password]", PASSWORD)
                login.click("button[type=submit]")
                login.wait_for_load_state()
                login.close()

                # 1. Ingest-to-chart latency, and the 2 s poll beside it.
                page = context.new_page()
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.add_init_script(SPY)
                page.goto(f"{base}/runs/{live_id}/")
                page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
                # Step 0 first, so the marker's chart exists before the timed steps.
                warm = page.evaluate(
                    DRIVE,
                    [f"/api/v1/runs/{live_id}/metrics/", token, STEP_SOURCES, KEYS, MARKER, 0, 1, 200, 500],
                )
                page.wait_for_function("() => window.__drawn[0] !== undefined", timeout=WAIT_MS)
                # The marker's chart on screen, as someone watching it would have it; charts off
                # screen are drawn when the browser is idle.
                marker_chart = page.locator(f'.chart[data-key="{MARKER}"]')
                marker_chart.wait_for(state="attached", timeout=WAIT_MS)
                marker_chart.scroll_into_view_if_needed()
                result = page.evaluate(
                    DRIVE,
                    [
                        f"/api/v1/runs/{live_id}/metrics/",
                        token,
                        STEP_SOURCES,
                        KEYS,
                        MARKER,
                        1,
                        steps,
                        200,
                        4500,
                    ],
                )
                drawn = page.evaluate("() => window.__drawn")
                page.close()
                errors += warm["errors"] + result["errors"]
                posted = {int(k): v for k, v in result["posted"].items()}
                ws = [drawn[str(s)] - t for s, t in posted.items() if str(s) in drawn]
                poll = [result["polled"][str(s)] - t for s, t in posted.items() if str(s) in result["polled"]]

                # 2. Load of the big run, and its raw points page by page.
                loads = [load_once(context, base, big_id) for _ in range(args.loads)]
                raw_page = context.new_page()
                raw_page.goto(base + "/")
                pages_total = -(-big_points // 500)
                sample = sorted(
                    {*range(1, 11), *range(pages_total // 2, pages_total // 2 + 10),
                     *range(max(1, pages_total - 9), pages_total + 1)}
                )  # fmt: skip
                raw = raw_page.evaluate(RAW_PAGES, [f"/api/v1/runs/{big_id}/metrics/", sample])
                raw_page.close()
                context.close()
            finally:
                browser.close()

        bad_raw = [r for r in raw["out"] if r["status"] != 200]
        raw_ms = [r["ms"] for r in raw["out"] if r["status"] == 200]
        raw_total_s = statistics.mean(raw_ms) * pages_total / 1000 if raw_ms else float("nan")
        median = {name: statistics.median(ms[name] for ms in loads) for name in ("first", "screen", "full")}

        def row(name: str, values: list[float], goal: str = "") -> None:
            p50, p95, mean = percentile(values, 0.5), percentile(values, 0.95), statistics.mean(values)
            print(f"{name:<44} {p50:7.0f}ms {p95:7.0f}ms {mean:7.0f}ms {len(values):>5}  {goal}")

        points_a_step = len(STEP_SOURCES) * len(KEYS) + 1
        print()
        print(f"live: {steps} steps at 5/s, {points_a_step} points a step, posted from the page; times are")
        print("      performance.now() of that one page (POST returned -> marker on the chart / in a poll)")
        print(f"{'measure':<44} {'p50':>9} {'p95':>9} {'mean':>9} {'n':>5}  goal")
        if ws:
            met = "met" if percentile(ws, 0.95) < 1000 else "NOT met"
            row("websocket -> chart (Triune)", ws, f"p95 < 1000 ms: {met}")
        if poll:
            row("GET every 2 s (W&B/MLflow-style baseline)", poll)
        print(f"steps drawn {len(ws)}/{steps}, polled {len(poll)}/{steps}")
        print()
        print(f"load: run of {big_points:,} points, {args.loads} loads, median")
        print(f"{'first chart drawn (from navigation)':<44} {median['first']:7.0f}ms")
        met = "met" if median["screen"] < 1500 else "NOT met"
        screen_name = "first screen: every chart in view drawn"
        print(f"{screen_name:<44} {median['screen']:7.0f}ms  goal < 1500 ms: {met}")
        full_name = f"full page: live, all {loads[0]['charts']} charts drawn"
        print(f"{full_name:<44} {median['full']:7.0f}ms  (charts off screen: drawn when the browser is idle)")
        per_page = statistics.mean(raw_ms) if raw_ms else float("nan")
        print(
            f"{'raw points, 500 a page (baseline)':<44} {raw_total_s * 1000:7.0f}ms  extrapolated: "
            f"{len(raw_ms)} of {pages_total} pages timed (start, middle, end), {per_page:.1f} ms a page"
        )
        if raw["count"] is not None and raw["count"] != big_points:
            errors.append(f"the API counts {raw['count']} points, {big_points} were inserted")
        errors += [f"raw page {r['page']}: {r['status']}" for r in bad_raw]
        for error in errors[:5]:
            print(f"bench: {error}")
        missing = len(ws) < steps or len(poll) < steps
        return 1 if errors or missing else 0
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            from django.db import connections

            connections.close_all()
            database_drop(db)
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"bench: kept database {db} and the log in {workdir}")


if __name__ == "__main__":
    sys.exit(main())

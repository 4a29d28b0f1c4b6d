"""The live run page in a real browser against daphne: history from the series API, new points
over the websocket drawn in place, the IoU schedule's switch points, a reconnect that leaves no
gap, hostile source names, and who may see the page.

Points reach the platform as a trainer sends them: POST /api/v1/runs/<id>/metrics/ with a
run-scoped token, so the live server itself broadcasts them. Screenshots go to var/screenshots/
(ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest

from tests.e2e.conftest import ROOT, login

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"
SCREENSHOTS = ROOT / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 420, "height": 860}
HOSTILE = '<img src=x onerror="window.__pwned=1">&amp;'
WAIT_MS = 15_000

# Wraps WebSocket before the page's scripts run: records every socket and every catch-up frame,
# and while window.__blockSockets is set, points new sockets at a closed port (the network is down).
SOCKET_SPY = """
(() => {
  const Native = window.WebSocket;
  window.__sockets = [];
  window.__frames = [];
  window.__blockSockets = false;
  function Spy(url, protocols) {
    const target = window.__blockSockets ? "ws://127.0.0.1:9/" : url;
    const socket = protocols === undefined ? new Native(target) : new Native(target, protocols);
    socket.addEventListener("message", (event) => {
      const msg = JSON.parse(event.data);
      if (msg.catch_up) {
        window.__frames.push({ points: msg.points.length, more: msg.more, through: msg.through_step,
                               bytes: event.data.length });
      }
    });
    window.__sockets.push(socket);
    return socket;
  }
  Spy.prototype = Native.prototype;
  for (const name of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Spy[name] = Native[name];
  window.WebSocket = Spy;
})();
"""


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


class Trainer:
    """Posts points to the live server with a run-scoped token, as a training job does."""

    def __init__(self, base_url: str, run) -> None:
        from control.services.tokens import api_token_create

        _, self.raw = api_token_create(user=run.created_by, name=f"job of run {run.pk}", run=run)
        self.url = f"{base_url}/api/v1/runs/{run.pk}/metrics/"

    def post(self, points: list[tuple]) -> None:
        for i in range(0, len(points), 10_000):
            batch = points[i : i + 10_000]
            body = {"points": [{"step": s, "key": k, "source": src, "value": v} for s, k, src, v in batch]}
            request = urllib.request.Request(
                self.url,
                data=json.dumps(body).encode(),
                method="POST",
                headers={"Authorization": f"Bearer {self.raw}", "Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 200


def _store(run, points: list[tuple]) -> None:
    """Store points as the ingest API does (alerts, live broadcast, the run marked running), but
    through the services, without the API's checks."""
    from django.db import connection, transaction

    from control.services.metrics import PointIn, metric_points_ingest
    from control.services.runs import run_mark_running

    def store() -> None:
        try:
            with transaction.atomic():
                metric_points_ingest(run=run, points=[PointIn(s, k, v, src) for s, k, src, v in points])
                run_mark_running(run=run)
        finally:
            connection.close()

    # In a thread of its own, as a request is: the broadcast after commit cannot run in the
    # thread of Playwright's event loop.
    worker = threading.Thread(target=store)
    worker.start()
    worker.join()


def _step_points(step: int, sources: list[str], threshold: float | None = None) -> list[tuple]:
    """One training step as the trainer reports it: per-source rewards and lengths, global
    optimisation and system metrics, gradient norms of a few layers."""
    points = []
    for i, source in enumerate(sources):
        base = (i + 1) / 10
        points += [
            (step, "reward/final", source, round(base + step / 100, 6)),
            (step, "reward/accuracy", source, round(base / 2 + step / 200, 6)),
            (step, "reward/format", source, 1.0),
            (step, "response_length/mean", source, 100.0 + step + i),
            (step, "response_length/correct_mean", source, 90.0 + step),
            (step, "response_length/wrong_mean", source, 120.0 + step),
            (step, "count", source, 8.0),
        ]
    points += [
        (step, "reward/final", "", round(0.3 + step / 100, 6)),
        (step, "actor/pg_loss", "", round(0.5 - step / 100, 6)),
        (step, "actor/lr", "", 1e-6),
        (step, "actor/grad_norm", "", 1.5),
        (step, "perf/step_time", "", 2.0 + (step % 3)),
        (step, "perf/tokens_per_s", "", 1000.0 + step),
    ]
    points += [(step, f"grad_norm/vision.{layer}", "", 10.0 ** (layer - 2)) for layer in range(3)]
    points += [(step, f"grad_norm/language.{layer}", "", 0.5 * (layer + 1)) for layer in range(4)]
    if threshold is not None:
        points.append((step, "detection/iou_threshold", "", threshold))
    return points


@pytest.fixture
def watched(make_user, make_project, make_source):
    """A submitted run of two sources (counting and detection) of user rita, who may write."""
    from control.models import Run
    from control.services.runs import SourceWeight, run_create

    user = make_user("rita", password=PASSWORD)
    project = make_project(user, "watch")
    counting = make_source(project, "synth_counting", task_type="counting")
    detection = make_source(project, "synth_detection", task_type="detection")
    run = run_create(
        project=project,
        user=user,
        name="tiny demo",
        sources=[SourceWeight(counting, 3.0), SourceWeight(detection, 6.0)],
        total_steps=200,
    )
    Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1, ray_submission_id="triune-test")
    run.refresh_from_db()
    return run


def _open(page, base_url: str, run, username: str = "rita") -> list[str]:
    """Log in and open the run's page until it is live; returns the page's uncaught errors (so far
    and to come)."""
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.add_init_script(SOCKET_SPY)
    login(page, base_url, username, PASSWORD)
    page.goto(f"{base_url}/runs/{run.pk}/")
    page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
    _wait_all_drawn(page)
    return errors


def _wait_all_drawn(page) -> None:
    """Until every chart is drawn: those off screen are drawn when the browser is idle."""
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('.chart')).every((div) => div.data && div.data.length)",
        timeout=WAIT_MS,
    )


def _trace(page, chart: str, index: int) -> dict:
    return page.evaluate(
        """([chart, index]) => {
            const t = document.querySelector(`.chart[data-key="${chart}"]`).data[index];
            return {x: Array.from(t.x), y: Array.from(t.y), name: t.name, line: t.line, type: t.type};
        }""",
        [chart, index],
    )


def _wait_chart(page, chart: str, condition: str, timeout: int = WAIT_MS) -> None:
    """Wait until ``condition`` (JavaScript over ``div``, the chart's Plotly div) holds."""
    page.wait_for_function(
        '(chart) => { const div = document.querySelector(`.chart[data-key="${chart}"]`);'
        f" return Boolean(div && div.data && div.layout && ({condition})); }}",
        arg=chart,
        timeout=timeout,
    )


def _wait_last_x(page, chart: str, index: int, step: int, timeout: int = WAIT_MS) -> None:
    page.wait_for_function(
        """([chart, index, step]) => {
            const div = document.querySelector(`.chart[data-key="${chart}"]`);
            if (!div || !div.data || !div.data[index]) return false;
            const x = div.data[index].x;
            return x.length > 0 && x[x.length - 1] === step;
        }""",
        arg=[chart, index, step],
        timeout=timeout,
    )


def test_history_per_source_then_live_points_in_place(page, live_server_url, watched):
    trainer = Trainer(live_server_url, watched)
    sources = ["synth_counting", "synth_detection"]
    trainer.post([p for step in range(10) for p in _step_points(step, sources)])
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)

    # Per source: one trace per source, in the run's sorted source order, then "all".
    final = page.locator('.chart[data-key="reward/final"]')
    final.wait_for()
    counting, detection = _trace(page, "reward/final", 0), _trace(page, "reward/final", 1)
    assert (counting["name"], detection["name"]) == ("synth_counting", "synth_detection")
    assert counting["x"] == list(range(10))
    assert counting["y"] == [round(0.1 + s / 100, 6) for s in range(10)]
    assert _trace(page, "reward/final", 2)["name"] == "all"
    # The same colour and dash for a source on every chart; sources differ in both.
    accuracy = _trace(page, "reward/accuracy", 1)
    assert (accuracy["name"], accuracy["line"]["color"]) == ("synth_detection", detection["line"]["color"])
    assert counting["line"]["color"] != detection["line"]["color"]
    assert counting["line"]["dash"] != detection["line"]["dash"]
    # correct_mean vs wrong_mean share a chart; keys the run does not have get none.
    pair = page.evaluate(
        """() => document.querySelector('.chart[data-key="response_length/correct_mean"]').data
                 .map(t => [t.name, t.line.width])"""
    )
    assert pair[:2] == [["synth_counting · correct_mean", 2], ["synth_detection · correct_mean", 2]]
    assert pair[2:4] == [["synth_counting · wrong_mean", 1], ["synth_detection · wrong_mean", 1]]
    charts = page.evaluate("() => Array.from(document.querySelectorAll('.chart'), d => d.dataset.key)")
    assert "reflection/ratio" not in charts and "response_length/clip_ratio" not in charts
    assert page.locator(".chart-group[data-group=reflection]").count() == 0
    iou_empty = page.locator("#section-iou .section-empty")
    assert iou_empty.is_visible() and iou_empty.inner_text().startswith("No IoU threshold")
    for key in ("actor/pg_loss", "actor/lr", "perf/step_time", "perf/tokens_per_s", "grad_norm/vision"):
        assert key in charts
    assert page.locator("#section-optimisation .section-empty").is_hidden()
    heat = _trace(page, "grad_norm/language", 0)
    assert heat["type"] == "heatmap" and heat["x"] == list(range(10))
    assert page.evaluate(
        "() => Array.from(document.querySelector('.chart[data-key=\"grad_norm/language\"]').data[0].y)"
    ) == ["language.0", "language.1", "language.2", "language.3"]

    # New points arrive over the websocket and extend the traces without a reload or a redraw.
    page.evaluate(
        """() => {
            window.__reacts = 0;
            const react = Plotly.react;
            Plotly.react = function () { window.__reacts += 1; return react.apply(this, arguments); };
        }"""
    )
    trainer.post([p for step in (10, 11) for p in _step_points(step, sources)])
    _wait_last_x(page, "reward/final", 0, 11)
    assert _trace(page, "reward/final", 0)["x"] == list(range(12))
    assert _trace(page, "reward/final", 1)["y"][-2:] == [0.3, 0.31]
    _wait_last_x(page, "grad_norm/language", 0, 11)
    assert page.evaluate("() => window.__reacts") == 0
    assert page.locator("#last-step").inner_text() == "11"
    assert page.locator("#run-eta").inner_text().startswith("6%")  # 11 of 200 steps, as they came
    # The first metrics marked the run running: its badge followed over the websocket.
    assert page.locator("#run-status").inner_text() == "running"

    # Controls: hide a source; smoothing adds a smoothed line over a faint raw one.
    page.locator(".source-option", has_text="synth_counting").locator("input").uncheck()
    _wait_chart(page, "reward/final", "div.data[0].visible === false")
    page.locator(".source-option", has_text="synth_counting").locator("input").check()
    page.locator("#smoothing").fill("0.6")
    _wait_chart(page, "reward/final", "div.data.length === 6")
    smoothed = _trace(page, "reward/final", 3)
    # TensorBoard's debiased EMA: the first point is itself, the second 0.4*0.1 + 0.6*... / (1 - 0.6^2).
    assert smoothed["y"][0] == pytest.approx(0.1)
    assert smoothed["y"][1] == pytest.approx((0.6 * 0.4 * 0.1 + 0.4 * 0.11) / (1 - 0.36))
    page.locator("#smoothing").fill("0")
    page.locator("#minmax-band").check()
    _wait_chart(page, "reward/final", "div.data.some(t => t.fill === 'tonexty')")
    page.locator("#minmax-band").uncheck()

    page.wait_for_timeout(500)
    _shoot(page, "run-page-desktop")
    page.set_viewport_size(NARROW)
    page.wait_for_timeout(800)
    overflow = page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    _shoot(page, "run-page-narrow")

    # Cancel: the badge and the buttons follow the run's new state.
    page.set_viewport_size(DESKTOP)
    page.click("#run-cancel")
    page.locator("#run-status", has_text="cancelling").wait_for(timeout=WAIT_MS)
    assert page.locator("#run-cancel").is_hidden()
    assert errors == []


def test_learning_signal_charts_sit_in_the_per_source_section(page, live_server_url, watched):
    """``grpo/*`` keys are read with the first screen's history and drawn in their own group of
    the Per source section, right after the rewards; ``response_length/drift`` joins the lengths."""
    trainer = Trainer(live_server_url, watched)
    sources = ["synth_counting", "synth_detection"]
    signal = [
        (step, key, source, value)
        for step in range(5)
        for source, share in (("synth_counting", 0.25), ("synth_detection", 0.75), ("", 0.5))
        for key, value in (
            ("grpo/frac_zero_std", share),
            ("grpo/reward_std", 0.3),
            ("grpo/adv_abs_mean", 0.6),
            ("response_length/drift", float(step)),
        )
    ]
    trainer.post([p for step in range(5) for p in _step_points(step, sources)] + signal)
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    groups = page.locator("#section-per-source").evaluate(
        "(section) => Array.from(section.querySelectorAll('.chart-group'), g => g.dataset.group)"
    )
    assert groups[:3] == ["rewards", "signal", "length"]
    group = page.locator("#section-per-source .chart-group[data-group=signal]")
    assert group.locator("h3").inner_text() == "Learning signal"
    keys = group.evaluate("(g) => Array.from(g.querySelectorAll('.chart'), d => d.dataset.key)")
    assert keys == ["grpo/frac_zero_std", "grpo/reward_std", "grpo/adv_abs_mean"]
    frac = [_trace(page, "grpo/frac_zero_std", i) for i in range(3)]
    assert [t["name"] for t in frac] == ["synth_counting", "synth_detection", "all"]
    assert frac[1]["x"] == list(range(5)) and frac[1]["y"] == [0.75] * 5
    length = page.locator("#section-per-source .chart-group[data-group=length]")
    assert length.locator('.chart[data-key="response_length/drift"]').count() == 1
    assert errors == []


def test_late_steps_take_their_place_and_charts_off_screen_follow(page, live_server_url, watched):
    """Batches of a trainer that reach the page out of order (step 7, then 5 and 6) are drawn in
    step order; a chart below the first screen follows the live points without being scrolled to."""
    trainer = Trainer(live_server_url, watched)
    sources = ["synth_counting", "synth_detection"]
    trainer.post([p for step in range(5) for p in _step_points(step, sources)])
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    below = page.evaluate(
        """() => document.querySelector('.chart[data-key="perf/tokens_per_s"]').getBoundingClientRect().top
                 - window.innerHeight"""
    )
    assert below > 0, "the System section starts below the first screen"

    trainer.post(_step_points(7, sources))
    _wait_last_x(page, "reward/final", 0, 7)
    assert _trace(page, "reward/final", 0)["x"] == [0, 1, 2, 3, 4, 7]
    trainer.post([p for step in (5, 6) for p in _step_points(step, sources)])
    _wait_chart(page, "reward/final", "div.data[0].x.length === 8")
    assert _trace(page, "reward/final", 0)["x"] == list(range(8))
    assert _trace(page, "reward/final", 0)["y"] == [round(0.1 + s / 100, 6) for s in range(8)]
    _wait_chart(page, "perf/tokens_per_s", "div.data[0].x.length === 8")
    assert _trace(page, "perf/tokens_per_s", 0)["y"] == [1000.0 + s for s in range(8)]
    heat = page.locator('.chart[data-key="grad_norm/language"]')
    heat.scroll_into_view_if_needed()
    _wait_chart(page, "grad_norm/language", "div.data[0].x.length === 8")
    assert _trace(page, "grad_norm/language", 0)["x"] == list(range(8))
    assert errors == []


def test_iou_threshold_steps_with_its_switch_points_marked(page, live_server_url, watched):
    trainer = Trainer(live_server_url, watched)
    sources = ["synth_counting", "synth_detection"]

    def schedule(step: int) -> float:
        return 0.85 if step < 10 else 0.95 if step < 20 else 0.99

    trainer.post([p for step in range(15) for p in _step_points(step, sources, schedule(step))])
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    threshold = page.locator('.chart[data-key="detection/iou_threshold"]')
    threshold.wait_for()

    def marks() -> list:
        return page.evaluate(
            """() => {
                const layout = document.querySelector('.chart[data-key="detection/iou_threshold"]').layout;
                return (layout.shapes || []).map((s, i) => [s.x0, layout.annotations[i].text]);
            }"""
        )

    assert marks() == [[10, "0.85→0.95"]]
    # The second switch comes live, and is marked on both charts of the section.
    trainer.post([p for step in range(15, 25) for p in _step_points(step, sources, schedule(step))])
    _wait_last_x(page, "detection/iou_threshold", 0, 24)
    _wait_chart(page, "detection/iou_threshold", "div.layout.shapes.length === 2")
    assert marks() == [[10, "0.85→0.95"], [20, "0.95→0.99"]]
    ys = _trace(page, "detection/iou_threshold", 0)["y"]
    assert ys == [schedule(s) for s in range(25)]
    assert [v for i, v in enumerate(ys) if i == 0 or v != ys[i - 1]] == [0.85, 0.95, 0.99]
    # Next to it: reward/accuracy of the detection source only, with the same marks.
    beside = page.evaluate(
        """() => {
            const div = document.querySelector('.chart[data-key="reward/accuracy@detection"]');
            return {names: div.data.map(t => t.name), marks: div.layout.shapes.map(s => s.x0)};
        }"""
    )
    assert beside == {"names": ["synth_detection"], "marks": [10, 20]}
    _shoot(page, "run-page-iou")
    assert errors == []


def test_a_reconnect_backfills_every_point_without_a_gap(page, live_server_url, watched, make_source):
    """The socket is closed and kept down while 6,500 points come (more than a catch-up frame),
    then reopened while points keep coming: the chart holds every point of the database."""
    from control.models import MetricPoint, RunSource

    sources = [f"s{i}" for i in range(10)]
    for name in sources:
        RunSource.objects.create(run=watched, data_source=make_source(watched.project, name), weight=1.0)
    keys = ["reward/final", "reward/accuracy", "reward/format", "response_length/mean", "count"]

    def step_points(step: int) -> list[tuple]:
        return [(step, key, source, step + i / 10) for key in keys for i, source in enumerate(sources)]

    trainer = Trainer(live_server_url, watched)
    trainer.post([p for step in range(5) for p in step_points(step)])
    page.set_viewport_size(DESKTOP)
    series_requests: list[str] = []
    page.on("request", lambda r: series_requests.append(r.url) if "/series/" in r.url else None)
    errors = _open(page, live_server_url, watched)
    _wait_last_x(page, "reward/final", 0, 4)

    page.evaluate("() => { window.__blockSockets = true; window.__sockets.forEach(s => s.close()); }")
    page.locator("#live-state", has_text="reconnecting").wait_for(timeout=WAIT_MS)
    # 130 steps x 50 points = 6,500 points while the page is away: more than one frame holds.
    trainer.post([p for step in range(5, 135) for p in step_points(step)])

    done = threading.Event()

    def keep_coming() -> None:
        for step in range(135, 160):
            trainer.post(step_points(step))
            time.sleep(0.05)
        done.set()

    feeder = threading.Thread(target=keep_coming)
    feeder.start()
    try:
        page.evaluate("() => { window.__blockSockets = false; }")
        done.wait(60)
    finally:
        feeder.join(60)
    _wait_last_x(page, "reward/final", 0, 159, timeout=30_000)

    frames = page.evaluate("() => window.__frames")
    assert frames[0]["more"] is False  # the first connection: history was complete
    catch_up = frames[-1]
    # Catch-up after step 3 (one step back from the last drawn): steps 4-103 are 100 x 50 points.
    assert (catch_up["points"], catch_up["more"], catch_up["through"]) == (5000, True, 103)
    assert max(f["points"] for f in frames) <= 5000
    assert any("start_step=104" in url for url in series_requests)  # the rest came from the series API

    for index, source in ((0, "s0"), (9, "s9")):
        drawn = _trace(page, "reward/final", index)
        stored = list(
            MetricPoint.objects.filter(run=watched, key="reward/final", source=source)
            .order_by("step")
            .values_list("step", "value")
        )
        assert drawn["name"] == source
        assert list(zip(drawn["x"], drawn["y"], strict=True)) == stored
        assert [s for s, _ in stored] == list(range(160))  # no gap, no point twice
    assert errors == []


def test_a_hostile_source_name_stays_text(page, live_server_url, make_user, make_project, make_source):
    from control.models import Run
    from control.services.runs import SourceWeight, run_create

    user = make_user("rita", password=PASSWORD)
    project = make_project(user, HOSTILE)
    hostile = make_source(project, HOSTILE)
    run = run_create(project=project, user=user, name=HOSTILE, sources=[SourceWeight(hostile, 1.0)])
    Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1)
    # The API refuses such a source name for metrics now; points stored before that rule (or by
    # the service directly) must still show as text.
    _store(run, [(s, "reward/final", HOSTILE, s / 10) for s in range(3)])
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, run)
    page.locator('.chart[data-key="reward/final"]').wait_for()
    _store(run, [(3, "reward/final", HOSTILE + "2", 0.5)])  # a new hostile source, live
    _wait_chart(page, "reward/final", "div.data.length === 2")
    # Hover the chart so Plotly renders the trace names.
    page.evaluate(
        """() => Plotly.Fx.hover(document.querySelector('.chart[data-key="reward/final"]'),
                                 [{curveNumber: 0, pointNumber: 2}])"""
    )
    page.wait_for_timeout(300)
    assert page.evaluate("() => window.__pwned") is None
    assert dialogs == []
    assert page.locator("img").count() == 0
    assert page.locator("#run-name").inner_text() == HOSTILE
    labels = page.locator(".source-option").all_inner_texts()
    assert [label.strip() for label in labels] == [HOSTILE, HOSTILE + "2"]
    hover = page.locator(".chart[data-key='reward/final'] .hoverlayer").text_content()
    assert HOSTILE in hover
    assert errors == []


def test_only_members_see_the_page_and_viewers_cannot_act(
    page, live_server_url, watched, make_user, make_project, add_member
):
    outsider = make_user("otto", password=PASSWORD)
    make_project(outsider, "elsewhere")
    login(page, live_server_url, "otto", PASSWORD)
    response = page.goto(f"{live_server_url}/runs/{watched.pk}/")
    assert response.status == 404
    assert page.locator('.chart[data-key="reward/final"]').count() == 0

    viewer = make_user("vera", password=PASSWORD)
    add_member(watched.project, viewer, "viewer")
    page.context.clear_cookies()
    errors = _open(page, live_server_url, watched, username="vera")
    assert page.locator("#run-cancel").is_visible() and page.locator("#run-cancel").is_disabled()
    assert page.locator("#run-clone").is_disabled()
    assert page.locator("#section-per-source .section-empty").inner_text() == "No per-source metrics yet."
    assert errors == []


def test_controls_wall_time_log_scale_and_a_run_compared(page, live_server_url, watched, make_run):
    from control.models import Run

    sources = ["synth_counting", "synth_detection"]
    Trainer(live_server_url, watched).post([p for step in range(6) for p in _step_points(step, sources)])
    other = make_run(watched.project, sources=list(watched.sources.all()), name="baseline <b>bold</b>")
    Run.objects.filter(pk=other.pk).update(status="submitted", attempt=1)
    Trainer(live_server_url, other).post([p for step in range(4) for p in _step_points(step, sources)])
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    page.locator('.chart[data-key="reward/final"]').wait_for()

    # Another run of the project, drawn dotted in each source's colour.
    option = page.locator("#overlay-run option", has_text="baseline")
    assert option.inner_text() == f"run {other.pk}: baseline <b>bold</b> (running)"
    page.select_option("#overlay-run", str(other.pk))
    _wait_chart(page, "reward/final", "div.data.length === 6")
    compared = _trace(page, "reward/final", 3)
    assert compared["name"] == f"run {other.pk} · synth_counting"
    assert (compared["line"]["dash"], compared["x"]) == ("dot", [0, 1, 2, 3])
    assert compared["line"]["color"] == _trace(page, "reward/final", 0)["line"]["color"]

    # Wall time: the history again with each point's time; a live point lands at its arrival.
    page.select_option("#x-axis", "time")
    _wait_chart(page, "reward/final", "div.layout.xaxis.type === 'date'")
    page.locator('.chart[data-key="reward/final"]').wait_for()
    before = _trace(page, "reward/final", 0)["x"]
    now_ms = time.time() * 1000
    assert len(before) == 6 and all(abs(x - now_ms) < 120_000 for x in before)
    Trainer(live_server_url, watched).post(_step_points(6, sources))
    _wait_chart(page, "reward/final", "div.data[0].x.length === 7")
    after = _trace(page, "reward/final", 0)["x"]
    assert after[:6] == before and after[6] >= before[5]

    page.check("#log-scale")
    _wait_chart(page, "reward/final", "div.layout.yaxis.type === 'log'")
    _shoot(page, "run-page-controls")
    assert errors == []


def test_a_finished_run_shows_its_stored_log_and_artifacts(page, live_server_url, watched):
    from control.models import Run
    from control.services.run_outputs import run_artifacts_sync, run_log_store

    Run.objects.filter(pk=watched.pk).update(status="failed", error="trainer exited with status 1")
    watched.refresh_from_db()
    run_log_store(run=watched, attempt=1, text="step 1 done\n" + HOSTILE + "\nTraceback: boom\n")
    run_artifacts_sync(run=watched)
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    page.locator("#run-log", has_text="Traceback: boom").wait_for(timeout=WAIT_MS)
    assert page.locator("#run-log").inner_text() == "step 1 done\n" + HOSTILE + "\nTraceback: boom\n"
    assert page.locator("#run-error").inner_text() == "trainer exited with status 1"
    assert page.locator("#run-resume").is_visible() and page.locator("#run-cancel").is_hidden()
    row = page.locator("#artifacts tbody tr", has_text="log")
    row.wait_for()
    with page.expect_download() as caught:
        row.get_by_role("link", name="download").click()
    assert caught.value.suggested_filename == "attempt-1.log"
    assert page.locator("#live-state").inner_text() == "live"
    assert errors == []


def test_a_long_run_is_drawn_from_downsampled_history(page, live_server_url, watched):
    """36,000 points (1,200 steps of 3 sources x 10 keys): the page reads buckets as wide as a
    chart has pixels, and the websocket only catches up the last step."""
    sources = ["synth_counting", "synth_detection", "synth_math"]
    keys = ["reward/final", "reward/accuracy", "reward/format", "count"] + [
        f"response_length/{k}" for k in ("mean", "clip_ratio", "correct_mean", "wrong_mean")
    ]
    keys += ["reflection/ratio", "detection/map"]
    points = [
        (step, key, source, 1.0 if step == 601 and key == "reward/final" else (step % 100) / 100)
        for step in range(1200)
        for key in keys
        for source in sources
    ]
    assert len(points) == 36_000
    Trainer(live_server_url, watched).post(points)
    page.set_viewport_size(DESKTOP)
    errors = _open(page, live_server_url, watched)
    _wait_last_x(page, "reward/final", 0, 1199)
    width = page.evaluate("() => document.querySelector('.chart[data-key=\"reward/final\"]').clientWidth")
    drawn = _trace(page, "reward/final", 0)
    assert 100 < len(drawn["x"]) <= width  # buckets, never the 1,200 points
    assert drawn["x"][-1] == 1199 and drawn["y"][-1] == 0.99  # the last point as it is
    frames = page.evaluate("() => window.__frames")
    assert frames == [{"points": 30, "more": False, "through": None, "bytes": frames[0]["bytes"]}]
    # The spike at step 601 hides inside a bucket's last value but shows in its max.
    page.check("#minmax-band")
    _wait_chart(page, "reward/final", "div.data.some(t => t.fill === 'tonexty')")
    highs = page.evaluate(
        """() => document.querySelector('.chart[data-key="reward/final"]').data
                 .filter(t => t.fill === 'tonexty')[0].y"""
    )
    assert max(highs) == 1.0
    page.uncheck("#minmax-band")

    # Zoomed to steps 590-610, the chart reads that range again: every step, the spike as it is.
    page.evaluate(
        """() => Plotly.relayout(document.querySelector('.chart[data-key="reward/final"]'),
                                 {"xaxis.range": [590.4, 609.6]})"""
    )
    _wait_chart(page, "reward/final", "div.data[0].x.length === 21")
    zoomed = _trace(page, "reward/final", 0)
    assert zoomed["x"] == list(range(590, 611))
    assert zoomed["y"] == [1.0 if step == 601 else (step % 100) / 100 for step in range(590, 611)]
    note = page.locator('figure[data-chart="reward/final"] .zoom-note')
    assert note.inner_text() == "steps 590–610 in detail; double-click to go back"
    # A double-click (autorange) goes back to the whole run's buckets.
    page.evaluate(
        """() => Plotly.relayout(document.querySelector('.chart[data-key="reward/final"]'),
                                 {"xaxis.autorange": true})"""
    )
    _wait_chart(page, "reward/final", "div.data[0].x.length === " + str(len(drawn["x"])))
    assert _trace(page, "reward/final", 0)["x"] == drawn["x"]
    assert note.is_hidden()
    assert errors == []

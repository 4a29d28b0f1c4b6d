"""From the browser to Ray and back: a tiny run launched from the form trains as a Ray job on the
session's local head, and its page draws the per-source charts as they grow, then the run's end.

Real parts only: daphne serving pages, API and websockets; a Celery worker (in this process) that
submits; the Ray head; the trainer reporting to daphne over HTTP. The beat's reconciliation is
called in the waiting loop, as the beat would.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, login

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PASSWORD = "pw-for-tests-123"
SCREENSHOTS = ROOT / "var" / "screenshots"
WAIT_S = 240
STEPS = 30  # long enough for the page to draw the chart before the run ends, on a loaded machine
# Small enough that a step takes well under a second on one core.
ADVANCED = """\
rollout:
  prompts_per_step: 2
  max_response_length: 16
eval:
  every: 0
  before_training: false
checkpoint:
  every: 3
"""


@pytest.fixture
def server_env(ray_head, celery_worker_queue) -> dict[str, str]:
    """The live server reads Ray's logs from the session's head and queues tasks for this test's worker."""
    return {
        "TRIUNE_RAY_JOBS_URL": ray_head.url,
        "RAY_AUTH_TOKEN_PATH": str(ray_head.token_path),
        "CELERY_TASK_DEFAULT_QUEUE": celery_worker_queue.queue,
    }


@pytest.fixture
def on_ray(settings, ray_head, live_server_url, make_user, make_project, storage_dir, synth_files):
    """A member's project of the eight synthetic sources; the worker submits to the session's head
    and tells jobs to report to the live server."""
    from control.services.datasets import dataset_version_create
    from control.services.ingest import StagedFile

    settings.TRIUNE_RAY_JOBS_URL = ray_head.url
    settings.RAY_AUTH_TOKEN_PATH = str(ray_head.token_path)
    settings.PUBLIC_URL = live_server_url
    settings.TRIUNE_JOB_PLATFORM_URL = live_server_url
    user = make_user("ines", password=PASSWORD)
    project = make_project(user, "on ray")
    files = [StagedFile(p.name, p) for p in sorted(Path(synth_files).glob("*.parquet"))]
    dataset_version_create(project=project, user=user, name="synthetic", files=files)
    return project


def _reconcile_until(what: str, predicate, run_id: int, timeout: float = WAIT_S):
    """Reconcile (as the beat does) until ``predicate()`` holds; fail at once if the run ended first."""
    from control.models import Run
    from control.selectors.run_logs import run_log_chunk
    from control.services.runs import runs_reconcile_active

    deadline = time.monotonic() + timeout
    while True:
        runs_reconcile_active()
        value = predicate()
        if value:
            return value
        run = Run.objects.get(pk=run_id)
        if run.is_terminal:
            log = run_log_chunk(run=run).text[-3000:]
            raise AssertionError(f"run ended {run.status} before {what}: {run.error}\n{log}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _drawn_steps(page, chart: str) -> list[list[int]]:
    return page.evaluate(
        """(chart) => {
            const div = document.querySelector(`.chart[data-key="${chart}"]`);
            return div && div.data ? div.data.map((t) => Array.from(t.x)) : [];
        }""",
        chart,
    )


def test_a_run_launched_from_the_form_trains_on_ray_and_its_charts_grow_live(page, live_server_url, on_ray):
    from control.models import MetricPoint, Run

    project = on_ray
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, live_server_url, "ines", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/runs/new/")
    page.fill("#f-name", "counting and detection")
    for name in ("synth_counting", "synth_detection"):
        page.locator(f'#source-rows tr[data-name="{name}"] input[name=source]').check()
    page.fill("#f-total_steps", str(STEPS))
    page.fill("#f-advanced", ADVANCED)

    # A rollout group of one answer cannot be ranked: refused beside the field, nothing queued.
    page.fill("#f-rollout_n", "1")
    page.click("#launch-submit")
    page.locator("#err-rollout_n").wait_for()
    assert page.locator("#err-rollout_n").inner_text()
    assert Run.objects.count() == 0

    page.fill("#f-rollout_n", "2")
    page.click("#launch-submit")
    page.wait_for_url(f"{live_server_url}/runs/*/")
    run = Run.objects.get()
    assert page.url == f"{live_server_url}/runs/{run.pk}/"

    # The page follows the run over the websocket: submitted by the worker, running once the job
    # reports, and the per-source charts appear and grow without a reload.
    page.locator("#run-status", has_text="running").wait_for(timeout=WAIT_S * 1000)
    page.wait_for_function(
        """() => {
            const div = document.querySelector('.chart[data-key="reward/final"]');
            return Boolean(div && div.data && div.data.length >= 2 && div.data[0].x.length >= 1);
        }""",
        timeout=WAIT_S * 1000,
    )
    seen_first = max(len(x) for x in _drawn_steps(page, "reward/final"))
    navigations = page.evaluate("() => performance.getEntriesByType('navigation').length")

    _reconcile_until("the run to succeed", lambda: Run.objects.get(pk=run.pk).status == "succeeded", run.pk)
    page.locator("#run-status", has_text="succeeded").wait_for(timeout=30_000)
    page.wait_for_function(
        f"""() => {{
            const div = document.querySelector('.chart[data-key="reward/final"]');
            const all = div.data.find((t) => t.name === "all");
            return all && all.x.length === {STEPS} && all.x[all.x.length - 1] === {STEPS};
        }}""",
        timeout=30_000,
    )
    assert seen_first < STEPS, "the chart was first drawn before the run's last step, then grew"
    assert page.evaluate("() => performance.getEntriesByType('navigation').length") == navigations
    # What is drawn is what the database holds, per source (a step samples its prompts from the
    # mixture, so a source may be missing from a step).
    names = page.evaluate(
        "() => document.querySelector('.chart[data-key=\"reward/final\"]').data.map((t) => t.name)"
    )
    assert set(names) <= {"synth_counting", "synth_detection", "all"} and "all" in names
    for name, steps in zip(names, _drawn_steps(page, "reward/final"), strict=True):
        source = "" if name == "all" else name
        points = MetricPoint.objects.filter(run=run, key="reward/final", source=source)
        stored = sorted(points.values_list("step", flat=True))
        assert steps == stored
    # The run's end brings its stored log and its checkpoints.
    checkpoints = page.locator("#artifacts tbody tr", has_text="checkpoint")
    checkpoints.first.wait_for(timeout=30_000)
    steps = checkpoints.locator("td:nth-child(2)").all_inner_texts()
    assert set(steps) == {str(STEPS - 3), str(STEPS)}  # every 3 steps, the last two kept
    assert page.locator("#run-log").inner_text().strip()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / "run-on-ray.png"), full_page=True)
    assert errors == []

"""Redis stops and comes back while a run streams and a browser watches: ingest never fails, the
dashboard reconnects and backfills every step it missed, and Celery takes tasks again."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.e2e.conftest import login

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

SOURCES = ("synth_math", "synth_counting")
KEYS = ("reward/accuracy", "response_length/mean")
WAIT_MS = 60_000


def post_step(stack, seeded: dict, step: int) -> int:
    points = [
        {"step": step, "source": source, "key": key, "value": step + s / 10}
        for s, source in enumerate(SOURCES)
        for key in KEYS
    ]
    request = urllib.request.Request(
        stack.url + f"/api/v1/runs/{seeded['run']}/metrics/",
        data=json.dumps({"points": points}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {seeded['run_token']}"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status


def wait_drawn_through(page, last: int) -> None:
    """Until every trace of every chart of KEYS holds exactly the steps 1..last, in order."""
    page.wait_for_function(
        """([keys, last]) => keys.every((key) => {
            const div = document.querySelector(`.chart[data-key="${key}"]`);
            if (!div || !div.data || div.data.length < 2) return false;
            return div.data.every((t) => t.x.length === last && Array.from(t.x).every((x, i) => x === i + 1));
        })""",
        arg=[list(KEYS), last],
        timeout=WAIT_MS,
    )


def heartbeat(stack) -> str:
    """A task sent through the broker and answered by the stack's worker (blocks until it is)."""
    return stack.django(
        "from control.celery import app\nresult = app.send_task('workers.tasks.heartbeat').get(timeout=90)"
    )


def test_a_redis_restart_keeps_the_dashboard_complete_and_celery_working(stack, seeded, browser):
    stack.start_worker()
    assert heartbeat(stack)
    for step in (1, 2, 3):
        assert post_step(stack, seeded, step) == 200
    context = browser.new_context()
    page = context.new_page()
    try:
        login(page, stack.url, seeded["username"], seeded["password"])
        page.goto(f"{stack.url}/runs/{seeded['run']}/")
        page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
        wait_drawn_through(page, 3)

        stack.stop_redis()
        try:
            # Ingest does not need Redis: the points are stored; only their broadcast is lost.
            for step in (4, 5, 6):
                assert post_step(stack, seeded, step) == 200
            page.locator("#live-state", has_text="reconnecting").wait_for(timeout=WAIT_MS)
        finally:
            stack.start_redis()

        for step in (7, 8):
            assert post_step(stack, seeded, step) == 200
        # The page reconnected and caught up: the steps sent while Redis was away are drawn, in place.
        page.locator("#live-state", has_text="live").wait_for(timeout=WAIT_MS)
        wait_drawn_through(page, 8)
        assert post_step(stack, seeded, 9) == 200
        wait_drawn_through(page, 9)  # and live points flow again
    finally:
        context.close()
    assert heartbeat(stack)  # the worker reconnected to the broker

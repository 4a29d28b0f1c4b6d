"""The run state machine: legal transitions only, one event each, timestamps, first metrics → running."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

ALL = ["pending", "queued", "submitted", "running", "cancelling", "succeeded", "failed", "cancelled", "lost"]
LEGAL = {
    ("pending", "queued"),
    ("pending", "cancelled"),
    ("queued", "submitted"),
    ("queued", "failed"),
    ("queued", "cancelled"),
    *{("submitted", s) for s in ("running", "succeeded", "failed", "cancelling", "cancelled", "lost")},
    *{("running", s) for s in ("succeeded", "failed", "cancelling", "cancelled", "lost")},
    *{("cancelling", s) for s in ("cancelled", "succeeded", "failed", "lost")},
    ("failed", "queued"),
    ("cancelled", "queued"),
    ("lost", "queued"),
}


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("target", ALL)
def test_the_transition_table(current, target):
    from control.services.run_lifecycle import transition_allowed

    assert transition_allowed(current, target) == ((current, target) in LEGAL)


def test_every_transition_is_an_event_and_an_illegal_one_changes_nothing(run):
    from control.errors import Conflict
    from control.services.run_lifecycle import run_transition

    run_transition(run=run, to="queued", reason="launched", attempt=1)
    run_transition(run=run, to="submitted", reason="sent", ray_submission_id="job-1")
    running = run_transition(run=run, to="running", reason="metrics")
    assert running.started_at is not None and running.attempt_started_at is not None
    with pytest.raises(Conflict, match=f"run {run.pk} cannot go from running to queued"):
        run_transition(run=run, to="queued", reason="nope")
    # The same state again is a no-op, not an event.
    run_transition(run=run, to="running", reason="again")
    done = run_transition(run=run, to="succeeded", reason="finished")
    assert done.finished_at is not None and done.ray_submission_id == "job-1"
    events = list(run.events.values_list("from_status", "to_status", "reason", "attempt"))
    assert events == [
        ("pending", "queued", "launched", 1),
        ("queued", "submitted", "sent", 1),
        ("submitted", "running", "metrics", 1),
        ("running", "succeeded", "finished", 1),
    ]


def test_the_first_metrics_of_a_submitted_run_mark_it_running(run, run_client_for):
    from control.models import Run
    from control.services.run_lifecycle import run_transition

    run_transition(run=run, to="queued", attempt=1)
    run_transition(run=run, to="submitted", ray_submission_id="job-1")
    client = run_client_for(run)
    response = client.post(
        f"/api/v1/runs/{run.pk}/metrics/",
        {"points": [{"step": 1, "key": "perf/step_time", "value": 2.0}]},
        format="json",
    )
    assert response.status_code == 200, response.content
    run = Run.objects.get(pk=run.pk)
    assert run.status == "running"
    assert run.events.last().reason == "first metrics arrived"


def test_progress_and_eta_come_from_the_step_times(run, ingest, user, client_for):
    from control.services.run_lifecycle import run_transition

    run_transition(run=run, to="queued", attempt=1)
    run_transition(run=run, to="submitted")
    run_transition(run=run, to="running")
    ingest(run, (1, "perf/step_time", "", 2.0), (2, "perf/step_time", "", 4.0))
    body = client_for(run.created_by).get(f"/api/v1/runs/{run.pk}/").json()
    # total_steps 10, 2 done, mean step time 3 s: 8 steps left take 24 s.
    assert body["progress"] == {"step": 2, "total": 10, "fraction": 0.2, "eta_seconds": 24.0}

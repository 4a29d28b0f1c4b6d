"""A run left queued (its submit task lost with the broker, or held after its worker was killed) is
submitted again by the reconciler, once a period, and only when it has waited long enough."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.django_db(transaction=True)


def _queue(run, *, ago_s: float):
    from django.utils import timezone

    from control.models import Run

    Run.objects.filter(pk=run.pk).update(
        status="queued", attempt=1, queued_at=timezone.now() - timedelta(seconds=ago_s)
    )


def test_only_runs_queued_longer_than_the_limit_are_resubmitted_once_a_period(project, make_run, settings):
    from control.services.runs import runs_resubmit_stalled

    settings.TRIUNE_RESUBMIT_AFTER_S = 60
    stalled, fresh = make_run(project), make_run(project)
    make_run(project)  # pending: never resubmitted
    _queue(stalled, ago_s=61)
    _queue(fresh, ago_s=5)
    assert runs_resubmit_stalled() == [stalled.pk]
    assert runs_resubmit_stalled() == []  # the next reconciler round, within the period
    _queue(stalled, ago_s=120)  # queued again (a resume): a new queueing, resubmitted again
    assert runs_resubmit_stalled() == [stalled.pk]


def test_the_resubmitted_task_reaches_a_worker(project, make_run, settings, celery_worker_queue):
    """The worker runs the submit task it was sent again; with no Ray target the launch check fails
    the run, which shows the task ran (a real submission is the fault test's)."""
    import time

    from control.models import Run
    from control.services.runs import runs_resubmit_stalled

    settings.TRIUNE_RESUBMIT_AFTER_S = 1
    settings.TRIUNE_RAY_JOBS_URL = "http://127.0.0.1:9"  # nothing listens: the submission fails
    run = make_run(project)
    _queue(run, ago_s=30)
    assert runs_resubmit_stalled() == [run.pk]
    deadline = time.monotonic() + 60
    while Run.objects.get(pk=run.pk).status == "queued":
        assert time.monotonic() < deadline, "the resubmitted task never ran"
        time.sleep(0.1)
    assert Run.objects.get(pk=run.pk).status == "failed"

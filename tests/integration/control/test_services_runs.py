"""run_create and run_cancel: the rules a run's mixture and its life cycle obey."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def _create(project, sources, **extra):
    from control.services.runs import SourceWeight, run_create

    return run_create(
        project=project,
        user=project.created_by,
        name=extra.pop("name", "r"),
        sources=[SourceWeight(s, w) for s, w in sources],
        **extra,
    )


def test_run_create_records_the_mixture(project, make_source):
    geo, chart = make_source(project, name="geo"), make_source(project, name="chart")
    run = _create(project, [(geo, 3.0), (chart, 1.0)], total_steps=7, config={"lr": 1e-6})
    assert run.status == "pending"
    assert sorted(run.run_sources.values_list("data_source__name", "weight")) == [
        ("chart", 1.0),
        ("geo", 3.0),
    ]
    assert (run.total_steps, run.config, run.last_step) == (7, {"lr": 1e-6}, -1)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("empty", "a run needs at least one data source"),
        ("foreign", "data source {foreign} belongs to another project"),
        ("twice", "data source {geo} is listed twice"),
        ("zero", "weight of data source {geo} must be > 0, got 0.0"),
        ("negative", "weight of data source {geo} must be > 0, got -1.0"),
        ("nan", "weight of data source {geo} must be > 0, got nan"),
        ("preset", "preset must be one of vtriune-7b, vtriune-32b, tiny-cpu-demo, got 'gpt'"),
    ],
)
def test_run_create_refuses_a_bad_mixture(case, message, project, make_source, make_project, other_user):
    from control.errors import DomainError
    from control.models import Run

    geo = make_source(project, name="geo")
    foreign = make_source(make_project(other_user), name="secret")
    sources, extra = {
        "empty": ([], {}),
        "foreign": ([(geo, 1.0), (foreign, 1.0)], {}),
        "twice": ([(geo, 1.0), (geo, 1.0)], {}),
        "zero": ([(geo, 0.0)], {}),
        "negative": ([(geo, -1.0)], {}),
        "nan": ([(geo, float("nan"))], {}),
        "preset": ([(geo, 1.0)], {"preset": "gpt"}),
    }[case]
    with pytest.raises(DomainError) as caught:
        _create(project, sources, **extra)
    assert caught.value.message == message.format(geo=geo.pk, foreign=foreign.pk)
    assert caught.value.status == 400
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("start", "after", "finished"),
    [
        ("pending", "cancelled", True),
        ("submitted", "cancelling", False),
        ("running", "cancelling", False),
        ("cancelling", "cancelling", False),
    ],
)
def test_run_cancel_moves_the_status(start, after, finished, run):
    from control.models import Run
    from control.services.runs import run_cancel

    Run.objects.filter(pk=run.pk).update(status=start)
    cancelled = run_cancel(run=run)
    stored = Run.objects.get(pk=run.pk)
    assert cancelled.status == stored.status == after
    assert (stored.finished_at is not None) == finished


@pytest.mark.parametrize("start", ["succeeded", "failed", "cancelled"])
def test_run_cancel_of_an_ended_run_is_a_conflict(start, run):
    from control.errors import Conflict
    from control.models import Run
    from control.services.runs import run_cancel

    Run.objects.filter(pk=run.pk).update(status=start)
    with pytest.raises(Conflict, match=rf"run {run.pk} already ended \({start}\); nothing to cancel"):
        run_cancel(run=run)
    assert Run.objects.get(pk=run.pk).status == start


def test_run_cancel_reads_the_stored_status_not_a_stale_object(run):
    from control.errors import Conflict
    from control.models import Run
    from control.services.runs import run_cancel

    stale = Run.objects.get(pk=run.pk)  # still "pending" in memory
    run_cancel(run=run)
    with pytest.raises(Conflict):
        run_cancel(run=stale)

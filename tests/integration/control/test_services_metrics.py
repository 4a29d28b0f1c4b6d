"""metric_points_ingest and the run selectors, called directly."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_non_finite_values_are_stored_as_null(run, ingest):
    from control.models import MetricPoint

    ingest(
        run,
        (0, "a", "", float("nan")),
        (0, "b", "", float("inf")),
        (0, "c", "", float("-inf")),
        (0, "d", "", 2.5),
    )
    assert dict(MetricPoint.objects.filter(run=run).values_list("key", "value")) == {
        "a": None,
        "b": None,
        "c": None,
        "d": 2.5,
    }


def test_more_than_the_limit_is_refused_by_the_service_too(run):
    from control.errors import DomainError
    from control.models import MetricPoint
    from control.services.metrics import MAX_POINTS_PER_REQUEST, PointIn, metric_points_ingest

    points = [PointIn(step=s, key="k", value=1.0) for s in range(MAX_POINTS_PER_REQUEST + 1)]
    with pytest.raises(DomainError, match="at most 10000 points per request, got 10001") as caught:
        metric_points_ingest(run=run, points=points)
    assert caught.value.status == 400  # too large a request, not a conflict with the stored state
    assert MetricPoint.objects.count() == 0


def test_the_same_point_twice_in_a_batch_keeps_the_last(run, ingest):
    from control.models import MetricPoint

    assert ingest(run, (1, "k", "s", 0.1), (1, "k", "s", 0.2), (1, "k", "", 0.3)) == 2
    assert sorted(MetricPoint.objects.values_list("source", "value")) == [("", 0.3), ("s", 0.2)]


@pytest.mark.parametrize(("steps", "expected"), [([], -1), ([0], 0), ([3, 1], 3)])
def test_run_last_step(steps, expected, run, ingest):
    from control.services.metrics import run_last_step

    for step in steps:
        ingest(run, (step, "k", "", 1.0))
    # 0 is a step like any other, not "no step yet".
    assert run_last_step(run=run) == expected


def test_points_after_and_series_keys(run, make_run, project, ingest):
    from control.selectors.runs import metric_keys, metric_points_after

    ingest(run, (2, "b", "s", 1.0), (0, "a", "", 1.0), (1, "a", "", 2.0), (1, "b", "s", 3.0))
    ingest(make_run(project), (5, "z", "", 1.0))  # another run's points never mix in
    after = metric_points_after(run=run, step=0)
    assert [(p.step, p.key, p.source) for p in after] == [(1, "a", ""), (1, "b", "s"), (2, "b", "s")]
    assert [(p.step, p.key) for p in metric_points_after(run=run, step=0, key="a")] == [(1, "a")]
    assert [p.step for p in metric_points_after(run=run, source="s")] == [1, 2]
    assert metric_keys(run=run) == [("a", ""), ("b", "s")]

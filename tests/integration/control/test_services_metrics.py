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


def _stored(run) -> list[tuple]:
    from control.models import MetricPoint

    return list(
        MetricPoint.objects.filter(run=run)
        .order_by("step", "key", "source")
        .values_list("step", "key", "source", "value")
    )


@pytest.mark.parametrize(
    "text",
    [
        'a"b',  # a quote ends an element of an array literal
        "c\\d",  # a backslash escapes the next character
        "back\\",
        "{x,y}",  # braces and commas delimit elements
        "NULL",  # unquoted, an element spelled NULL is a null
        "null",
        " lead",
        "trail ",
        "it's",
        "é✓ 測試",
        "",
    ],
)
def test_sources_are_stored_verbatim_whatever_they_hold(text, run, ingest):
    ingest(run, (0, "reward/final", text, 0.5), (1, "reward/final", text, None))
    assert _stored(run) == [(0, "reward/final", text, 0.5), (1, "reward/final", text, None)]


@pytest.mark.parametrize("key", ["NULL", "null", "reward/final", "a" * 200])
def test_keys_spelled_like_null_are_stored_as_text(key, run, ingest):
    ingest(run, (0, key, "", 1.0))
    assert _stored(run) == [(0, key, "", 1.0)]


@pytest.mark.parametrize(
    ("values", "stored"),
    [
        ([0.1, 0.2, 0.3], 0.3),
        ([0.1, None], None),  # a null that comes last wins over a number
        ([0.1, float("nan")], None),  # and so does a NaN, stored as null
        ([float("inf"), 0.4], 0.4),
        ([None, 7], 7.0),  # an int is stored as a float
    ],
)
def test_the_last_duplicate_in_a_batch_wins(values, stored, run, ingest):
    assert ingest(run, *[(5, "k", "s", v) for v in values]) == 1
    assert _stored(run) == [(5, "k", "s", stored)]


def test_a_replayed_batch_overwrites_in_place(run, ingest):
    from control.models import MetricPoint

    first = [(s, f"k/{n}", "src", s + n / 100) for s in range(25) for n in range(40)]  # 1,000 points
    assert ingest(run, *first) == 1000
    ids = dict(MetricPoint.objects.filter(run=run).values_list("id", "value"))
    again = [(s, k, src, -v) for s, k, src, v in first]
    assert ingest(run, *again) == 1000
    rows = MetricPoint.objects.filter(run=run)
    assert rows.count() == 1000
    # The same rows (same ids), with the replay's values.
    assert dict(rows.values_list("id", "value")) == {pk: -value for pk, value in ids.items()}


def test_points_of_another_run_with_the_same_coordinates_are_kept_apart(run, make_run, project, ingest):
    other = make_run(project)
    ingest(run, (0, "k", "s", 1.0))
    ingest(other, (0, "k", "s", 2.0))
    assert _stored(run) == [(0, "k", "s", 1.0)]
    assert _stored(other) == [(0, "k", "s", 2.0)]


def test_an_empty_batch_stores_nothing(run, ingest):
    assert ingest(run) == 0
    assert _stored(run) == []


def test_last_step_moves_to_the_highest_step_of_a_batch_and_never_back(run, ingest):
    ingest(run, (3, "k", "", 1.0), (9, "k", "", 1.0), (4, "k", "", 1.0))
    run.refresh_from_db()
    assert run.last_step == 9
    ingest(run, (2, "k", "", 1.0))
    run.refresh_from_db()
    assert run.last_step == 9


def test_the_broadcast_carries_the_stored_points_once_the_transaction_commits(
    run, ingest, monkeypatch, django_capture_on_commit_callbacks
):
    sent: list[tuple] = []
    monkeypatch.setattr("control.services.metrics.broadcast_to_run", lambda *args: sent.append(args))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        ingest(run, (1, "k", "s", 0.5), (2, "k", "s", float("nan")), (1, "k", "s", 0.7))
        assert sent == []  # nothing leaves before the commit
    assert len(callbacks) == 1
    # Deduplicated (the last 0.7 wins), in first-seen order, NaN as null; with the time they were
    # stored at.
    from control.models import MetricPoint

    (stored_at,) = set(MetricPoint.objects.filter(run=run).values_list("created_at", flat=True))
    assert sent == [
        (
            run.pk,
            {
                "type": "metrics.points",
                "points": [
                    {"step": 1, "key": "k", "source": "s", "value": 0.7},
                    {"step": 2, "key": "k", "source": "s", "value": None},
                ],
                "time": stored_at.isoformat(),
            },
        )
    ]


def test_the_alert_rules_see_the_ingested_points(run, project, ingest, make_rule, monkeypatch):
    from control.models import Alert

    monkeypatch.setattr("control.services.alerts.enqueue_task", lambda *args: None)
    make_rule(project, key="reward/accuracy", source="", condition="below", threshold=0.5, window=1)
    ingest(run, (0, "reward/accuracy", "geo", 0.9), (1, "reward/accuracy", "geo", 0.1))
    assert list(Alert.objects.filter(run=run).values_list("source", "step")) == [("geo", 1)]

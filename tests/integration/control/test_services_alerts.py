"""The alert engine: rules evaluated on ingest, de-duplication, window, cooldown, self-resolution."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.django_db

ACC = "reward/accuracy"


def _alerts(run) -> list[tuple]:
    from control.models import Alert

    return list(
        Alert.objects.filter(run=run).order_by("id").values_list("rule__name", "source", "state", "step")
    )


@pytest.mark.parametrize(
    ("condition", "threshold", "value", "fires"),
    [
        ("below", 0.5, 0.49, True),
        ("below", 0.5, 0.5, False),  # strictly below
        ("below", 0.5, None, False),  # a missing value is not "below" anything
        ("above", 2.0, 2.01, True),
        ("above", 2.0, 2.0, False),
        ("above", 2.0, -5.0, False),
        ("not_finite", 0.0, None, True),  # null stands for NaN or infinity
        ("not_finite", 0.0, float("nan"), True),
        ("not_finite", 0.0, float("inf"), True),
        ("not_finite", 0.0, 1e308, False),
    ],
)
def test_conditions(condition, threshold, value, fires, project, run, make_rule, ingest):
    make_rule(project, name="r", condition=condition, threshold=threshold)
    ingest(run, (0, ACC, "geo", value))
    assert _alerts(run) == ([("r", "geo", "firing", 0)] if fires else [])


def test_the_alert_message_says_what_happened(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="accuracy collapse", threshold=0.5)
    ingest(run, (12, ACC, "geo", 0.125))
    alert = Alert.objects.get(run=run)
    assert (
        alert.message == "accuracy collapse: reward/accuracy on source geo is 0.125 at step 12 (value < 0.5)"
    )
    assert (alert.value, alert.step) == (0.125, 12)


def test_a_non_finite_value_is_stored_as_null_on_the_alert(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="nan loss", key="actor/pg_loss", condition="not_finite")
    ingest(run, (3, "actor/pg_loss", "", float("nan")))
    alert = Alert.objects.get(run=run)
    assert alert.value is None
    assert alert.message == "nan loss: actor/pg_loss is nan at step 3 (value is NaN or infinite)"


def test_a_rule_fires_once_per_rule_run_and_source_while_open(project, run, make_rule, ingest):
    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.1), (2, ACC, "geo", 0.0))
    # Same rule and run, another source: its own alert.
    ingest(run, (2, ACC, "chart", 0.2))
    assert _alerts(run) == [("r", "geo", "firing", 0), ("r", "chart", "firing", 2)]


def test_de_duplication_holds_while_acknowledged(project, run, make_rule, ingest):
    from control.models import Alert
    from control.services.alerts import alert_acknowledge

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    alert_acknowledge(alert=Alert.objects.get(run=run), user=project.created_by)
    ingest(run, (1, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", "acknowledged", 0)]


def test_two_runs_and_two_rules_each_get_their_own_alert(project, make_run, make_rule, ingest):
    first, second = make_run(project), make_run(project)
    make_rule(project, name="low")
    make_rule(project, name="very low", threshold=0.2)
    ingest(first, (0, ACC, "geo", 0.1))
    ingest(second, (0, ACC, "geo", 0.3))
    assert _alerts(first) == [("low", "geo", "firing", 0), ("very low", "geo", "firing", 0)]
    assert _alerts(second) == [("low", "geo", "firing", 0)]


def test_a_rule_on_one_source_ignores_the_others(project, run, make_rule, ingest):
    make_rule(project, name="r", source="chart")
    ingest(run, (0, ACC, "geo", 0.0), (0, ACC, "", 0.0))
    assert _alerts(run) == []
    ingest(run, (1, ACC, "chart", 0.0))
    assert _alerts(run) == [("r", "chart", "firing", 1)]


def test_a_rule_ignores_other_keys_disabled_rules_and_other_projects(
    project, run, make_rule, make_project, other_user, ingest
):
    make_rule(project, name="format", key="reward/format")
    make_rule(project, name="off", enabled=False)
    make_rule(make_project(other_user), name="elsewhere")
    ingest(run, (0, ACC, "geo", 0.0))
    assert _alerts(run) == []


@pytest.mark.parametrize(
    ("values", "fired_at_step"),
    [
        ([0.1, 0.1], None),  # two bad steps of a window of three: not yet
        ([0.1, 0.1, 0.1], 2),
        ([0.1, 0.9, 0.1, 0.1], None),  # a good step in between restarts the count
        ([0.1, 0.9, 0.1, 0.1, 0.1], 4),
        ([0.9, 0.1, 0.1, 0.1], 3),
    ],
)
def test_the_window_needs_that_many_consecutive_bad_steps(
    values, fired_at_step, project, run, make_rule, ingest
):
    make_rule(project, name="r", window=3)
    for step, value in enumerate(values):
        ingest(run, (step, ACC, "geo", value))
    assert _alerts(run) == ([] if fired_at_step is None else [("r", "geo", "firing", fired_at_step)])


def test_a_window_is_judged_on_the_stored_series_when_a_batch_holds_several_steps(
    project, run, make_rule, ingest
):
    make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", 0.1), (2, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", "firing", 2)]


def test_a_firing_alert_resolves_itself_when_the_condition_stops(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.8))
    alert = Alert.objects.get(run=run)
    assert alert.state == "resolved"
    assert alert.resolved_at is not None and alert.resolved_at >= alert.fired_at


def test_an_acknowledged_alert_waits_for_a_person_to_resolve_it(project, run, make_rule, ingest):
    from control.models import Alert
    from control.services.alerts import alert_acknowledge

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    alert_acknowledge(alert=Alert.objects.get(run=run), user=project.created_by)
    ingest(run, (1, ACC, "geo", 0.8))
    assert _alerts(run) == [("r", "geo", "acknowledged", 0)]


def test_the_cooldown_holds_back_a_new_alert_and_then_lets_it_fire(project, run, make_rule, ingest):
    from django.utils import timezone

    from control.models import Alert

    make_rule(project, name="r", cooldown_seconds=600)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.9))  # resolves
    ingest(run, (2, ACC, "geo", 0.1))  # bad again within the cooldown: nothing
    assert _alerts(run) == [("r", "geo", "resolved", 0)]
    # Ten minutes and a second later (moved back in time rather than waited for).
    Alert.objects.filter(run=run).update(fired_at=timezone.now() - timedelta(seconds=601))
    ingest(run, (3, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", "resolved", 0), ("r", "geo", "firing", 3)]


def test_no_cooldown_fires_again_at_once_after_resolution(project, run, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=0)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.9))
    ingest(run, (2, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", "resolved", 0), ("r", "geo", "firing", 2)]


def test_the_cooldown_is_per_source(project, run, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=3600)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (0, ACC, "chart", 0.1))
    assert [a[1] for a in _alerts(run)] == ["geo", "chart"]


def test_a_replayed_batch_fires_nothing_new(project, run, make_rule, ingest):
    make_rule(project, name="r")
    batch = [(0, ACC, "geo", 0.1), (1, ACC, "geo", 0.2)]
    ingest(run, *batch)
    ingest(run, *batch)
    assert _alerts(run) == [("r", "geo", "firing", 1)]


@pytest.mark.parametrize(
    ("transition", "start", "message"),
    [
        (
            "acknowledge",
            "acknowledged",
            "alert {id} is acknowledged; only a firing alert can be acknowledged",
        ),
        ("acknowledge", "resolved", "alert {id} is resolved; only a firing alert can be acknowledged"),
        ("resolve", "resolved", "alert {id} is already resolved"),
    ],
)
def test_wrong_transitions_are_conflicts(transition, start, message, project, run, make_rule, ingest):
    from control.errors import Conflict
    from control.models import Alert
    from control.services.alerts import alert_acknowledge, alert_resolve

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    alert = Alert.objects.get(run=run)
    Alert.objects.filter(pk=alert.pk).update(state=start)
    alert.refresh_from_db()
    call = {
        "acknowledge": lambda: alert_acknowledge(alert=alert, user=project.created_by),
        "resolve": lambda: alert_resolve(alert=alert),
    }[transition]
    with pytest.raises(Conflict) as caught:
        call()
    assert caught.value.message == message.format(id=alert.pk)
    alert.refresh_from_db()
    assert alert.state == start


def test_alert_rule_create_refuses_a_duplicate_name_and_an_unknown_condition(project, make_rule):
    from control.errors import Conflict, DomainError
    from control.services.alerts import alert_rule_create

    make_rule(project, name="r")
    with pytest.raises(Conflict, match="an alert rule named 'r' already exists in this project"):
        make_rule(project, name="r")
    with pytest.raises(DomainError, match="condition must be one of above, below, not_finite"):
        alert_rule_create(project=project, user=project.created_by, name="x", key=ACC, condition="sideways")


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_ingests_open_one_alert_and_both_succeed(project, run, make_rule, ingest):
    """A live batch and a late replay of older steps of the same run, evaluated at the same time.

    The live ingest holds its transaction open after opening its alert; the replay
    (older steps: it leaves last_step, and so the run's row, alone) then blocks on the
    one-open-alert constraint until the first commits.
    """
    import threading
    import time

    from django.db import connection, transaction

    from control.models import Alert, MetricPoint, Run
    from control.services.metrics import PointIn, metric_points_ingest

    ingest(run, (5, ACC, "geo", 0.9))  # last_step 5, nothing fires
    make_rule(project, name="r")
    live_inside, live_may_commit = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def live() -> None:
        try:
            with transaction.atomic():
                fresh = Run.objects.get(pk=run.pk)
                metric_points_ingest(run=fresh, points=[PointIn(step=6, key=ACC, value=0.1, source="geo")])
                live_inside.set()
                live_may_commit.wait(30)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    def replay() -> None:
        try:
            fresh = Run.objects.get(pk=run.pk)
            metric_points_ingest(run=fresh, points=[PointIn(step=3, key=ACC, value=0.2, source="geo")])
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=live), threading.Thread(target=replay)]
    threads[0].start()
    assert live_inside.wait(30)
    threads[1].start()
    # Wait, with a deadline, until the replay is blocked on the live ingest's lock.
    query = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    deadline = time.monotonic() + 30
    while True:
        with connection.cursor() as cursor:
            cursor.execute(query)
            if cursor.fetchone()[0] >= 1:
                break
        assert time.monotonic() < deadline, "the replay never waited on the live ingest"
    live_may_commit.set()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert list(Alert.objects.filter(run=run).values_list("state", "step")) == [("firing", 6)]
    assert MetricPoint.objects.filter(run=run).count() == 3

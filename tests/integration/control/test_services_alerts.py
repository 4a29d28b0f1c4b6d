"""Alert rules through ingest: each kind, scopes, de-duplication, cooldown, auto-resolution, stored
state, run-state and stall rules, and what a rule may be created with."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.django_db

ACC = "reward/accuracy"


def _alerts(run) -> list[tuple]:
    from control.models import Alert

    return list(
        Alert.objects.filter(run=run)
        .order_by("id")
        .values_list("rule__name", "source", "key", "state", "step")
    )


def _state(rule, run, source: str, key: str) -> dict:
    from control.models import AlertState

    return AlertState.objects.get(rule=rule, run=run, source=source, key=key).state


def _to_running(run):
    from control.services.run_lifecycle import run_transition

    run_transition(run=run, to="queued", attempt=1)
    run_transition(run=run, to="submitted")
    return run_transition(run=run, to="running")


# ---- threshold and non-finite --------------------------------------------------------------------


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
    assert _alerts(run) == ([("r", "geo", ACC, "firing", 0)] if fires else [])


def test_the_alert_message_says_what_happened(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="accuracy collapse", threshold=0.5, severity="error")
    ingest(run, (12, ACC, "geo", 0.125))
    alert = Alert.objects.get(run=run)
    assert alert.message == "accuracy collapse: geo reward/accuracy = 0.125 at step 12, below 0.5"
    assert (alert.value, alert.step, alert.key, alert.severity) == (0.125, 12, ACC, "error")


def test_a_streak_says_since_when(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="low", window=3)
    ingest(run, (4, ACC, "geo", 0.25), (5, ACC, "geo", 0.125), (6, ACC, "geo", 0.0625))
    assert Alert.objects.get(run=run).message == (
        "low: geo reward/accuracy = 0.0625 at step 6, below 0.5 for 3 steps (since step 4, 0.25)"
    )


def test_a_non_finite_value_is_stored_as_null_on_the_alert(project, run, make_rule, ingest):
    from control.models import Alert

    rule = make_rule(project, name="nan loss", key="actor/pg_loss", condition="not_finite")
    assert rule.kind == "not_finite"  # a rule sent with the condition alone
    ingest(run, (3, "actor/pg_loss", "", float("nan")))
    alert = Alert.objects.get(run=run)
    assert alert.value is None
    assert alert.message == "nan loss: actor/pg_loss is NaN or infinite at step 3"


def test_a_threshold_rule_ignores_a_non_finite_value_and_keeps_its_streak(project, run, make_rule, ingest):
    make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", float("nan")), (2, ACC, "geo", 0.1))
    assert _alerts(run) == []
    ingest(run, (3, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 3)]


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
    assert _alerts(run) == ([] if fired_at_step is None else [("r", "geo", ACC, "firing", fired_at_step)])


def test_a_window_within_one_batch_fires_on_the_step_it_completes(project, run, make_rule, ingest):
    make_rule(project, name="r", window=3)
    # Given out of order: judged in step order.
    ingest(run, (2, ACC, "geo", 0.1), (0, ACC, "geo", 0.1), (3, ACC, "geo", 0.1), (1, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 2)]


# ---- change --------------------------------------------------------------------------------------


def test_a_drop_fires_on_the_step_it_happens_and_only_then(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(
        project, name="drop", kind="change", key="reward/final", condition="drop", threshold=0.5, window=4
    )
    for step, value in enumerate([0.6, 0.62, 0.58, 0.6, 0.61, 0.59]):
        ingest(run, (step, "reward/final", "geo", value))
    assert _alerts(run) == []
    # median(0.58, 0.6, 0.61, 0.59) = 0.595: a drop is below 0.2975.
    ingest(run, (6, "reward/final", "geo", 0.3))
    assert _alerts(run) == []
    ingest(run, (7, "reward/final", "geo", 0.05))
    assert _alerts(run) == [("drop", "geo", "reward/final", "firing", 7)]
    assert Alert.objects.get(run=run).message == (
        "drop: geo reward/final fell from 0.595 (median of steps 3–6) to 0.05 at step 7"
    )


def test_a_rise_by_mad_after_the_warmup(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(
        project,
        name="length",
        kind="change",
        key="response_length/mean",
        condition="rise",
        change_by="mad",
        threshold=5.0,
        window=5,
        warmup=6,
    )
    # Steps 0-5 fill the window and the warm-up. At step 5 the window is 98..102, median 100,
    # |x - 100| = 2, 1, 0, 1, 2 with median 1: s = 1.4826; a rise is above 100 + 5 s = 107.413.
    values = [100.0, 98.0, 99.0, 100.0, 101.0, 102.0]
    ingest(run, *[(step, "response_length/mean", "", v) for step, v in enumerate(values)])
    assert _alerts(run) == []
    # Step 6 against steps 1-5 (98, 99, 100, 101, 102): the same median and scale.
    ingest(run, (6, "response_length/mean", "", 107.0))
    assert _alerts(run) == []
    # Step 7 against steps 2-6 (99, 100, 101, 102, 107): median 101, |x - 101| = 2, 1, 0, 1, 6 with
    # median 1; 120 > 101 + 7.413; (120 - 101) / 1.4826 = 12.8 deviations.
    ingest(run, (7, "response_length/mean", "", 120.0))
    assert _alerts(run) == [("length", "", "response_length/mean", "firing", 7)]
    assert Alert.objects.get(run=run).message == (
        "length: response_length/mean rose from 101 (median of steps 2–6) to 120 at step 7,"
        " 12.8 robust deviations"
    )


def test_the_warmup_holds_back_even_a_full_window(project, run, make_rule, ingest):
    make_rule(
        project,
        name="drop",
        kind="change",
        key="reward/final",
        condition="drop",
        threshold=0.5,
        window=2,
        warmup=4,
    )
    ingest(
        run, (0, "reward/final", "geo", 1.0), (1, "reward/final", "geo", 1.0), (2, "reward/final", "geo", 1.0)
    )
    ingest(run, (3, "reward/final", "geo", 0.1))  # three points seen: not judged
    assert _alerts(run) == []
    # Four seen; median(1.0, 0.1) = 0.55, and 0.1 < 0.275.
    ingest(run, (4, "reward/final", "geo", 0.1))
    assert _alerts(run) == [("drop", "geo", "reward/final", "firing", 4)]


# ---- sources and keys ----------------------------------------------------------------------------


def test_a_rule_on_every_source_fires_per_source_on_its_own(project, run, make_rule, ingest):
    make_rule(project, name="r", window=2)
    healthy_but_chart = [("geo", 0.9), ("chart", 0.1), ("", 0.8)]
    ingest(run, *[(step, ACC, s, v) for step in (0, 1) for s, v in healthy_but_chart])
    assert _alerts(run) == [("r", "chart", ACC, "firing", 1)]
    ingest(run, (2, ACC, "geo", 0.1))
    ingest(run, (3, ACC, "geo", 0.1))
    ingest(run, (4, ACC, "", 0.1), (5, ACC, "", 0.1))  # the global source is a source too
    assert _alerts(run) == [
        ("r", "chart", ACC, "firing", 1),
        ("r", "geo", ACC, "firing", 3),
        ("r", "", ACC, "firing", 5),
    ]


def test_a_rule_fires_once_per_rule_run_and_source_while_open(project, run, make_rule, ingest):
    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.1), (2, ACC, "geo", 0.0))
    # Same rule and run, another source: its own alert.
    ingest(run, (2, ACC, "chart", 0.2))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 0), ("r", "chart", ACC, "firing", 2)]


def test_a_rule_on_one_source_or_a_prefix_ignores_the_others(project, run, make_rule, ingest):
    make_rule(project, name="chart only", source="chart")
    make_rule(project, name="synth", source="synth_*")
    ingest(run, (0, ACC, "geo", 0.0), (0, ACC, "", 0.0), (0, ACC, "real_chart", 0.0))
    assert _alerts(run) == []
    ingest(run, (1, ACC, "chart", 0.0), (1, ACC, "synth_math", 0.0))
    assert sorted(_alerts(run)) == [
        ("chart only", "chart", ACC, "firing", 1),
        ("synth", "synth_math", ACC, "firing", 1),
    ]


def test_a_key_glob_watches_every_key_under_it(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="vision", key="grad_norm/vision.*", condition="above", threshold=5.0)
    ingest(
        run,
        (0, "grad_norm/vision.0", "", 1.0),
        (0, "grad_norm/vision.3", "", 7.0),
        (0, "grad_norm/language.0", "", 9.0),
        (0, "grad_norm/vision", "", 9.0),
    )
    assert _alerts(run) == [("vision", "", "grad_norm/vision.3", "firing", 0)]
    assert Alert.objects.get(run=run).message == "vision: grad_norm/vision.3 = 7 at step 0, above 5"
    # Another key of the same rule and source while it is open: still one alert.
    ingest(run, (1, "grad_norm/vision.0", "", 8.0))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.3", "firing", 0)]


def test_a_glob_alert_resolves_on_its_own_key_not_on_a_quiet_sibling(project, run, make_rule, ingest):
    make_rule(
        project,
        name="vision",
        key="grad_norm/vision.*",
        condition="above",
        threshold=5.0,
        auto_resolve_steps=2,
    )
    for step in (0, 1, 2):
        ingest(run, (step, "grad_norm/vision.0", "", 1.0), (step, "grad_norm/vision.1", "", 1.0))
    ingest(run, (3, "grad_norm/vision.0", "", 1.0), (3, "grad_norm/vision.1", "", 9.0))
    # vision.0 has been clear for five steps; the alert is vision.1's, which still holds.
    ingest(run, (4, "grad_norm/vision.0", "", 1.0), (4, "grad_norm/vision.1", "", 9.0))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.1", "firing", 3)]
    ingest(run, (5, "grad_norm/vision.0", "", 1.0), (5, "grad_norm/vision.1", "", 1.0))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.1", "firing", 3)]
    ingest(run, (6, "grad_norm/vision.0", "", 1.0), (6, "grad_norm/vision.1", "", 1.0))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.1", "resolved", 3)]


def test_the_largest_of_a_modules_layers_is_judged_as_one_series(project, run, make_rule, ingest):
    from control.models import Alert

    rule = make_rule(
        project,
        name="vision",
        key="grad_norm/vision.*",
        combine="max",
        condition="above",
        threshold=5.0,
        window=2,
        auto_resolve_steps=2,
    )
    # No single layer is above 5 twice running, but the largest of them is: steps 1 and 2.
    ingest(
        run,
        *[(0, f"grad_norm/vision.{i}", "", v) for i, v in enumerate([1.0, 2.0, 3.0])],
        *[(1, f"grad_norm/vision.{i}", "", v) for i, v in enumerate([6.0, 2.0, 3.0])],
        *[(2, f"grad_norm/vision.{i}", "", v) for i, v in enumerate([1.0, 2.0, 7.0])],
    )
    assert _alerts(run) == [("vision", "", "grad_norm/vision.2", "firing", 2)]
    alert = Alert.objects.get(run=run)
    assert alert.message == (
        "vision: grad_norm/vision.2 (the largest of grad_norm/vision.*) = 7 at step 2, above 5"
        " for 2 steps (since step 1, 6)"
    )
    assert _state(rule, run, "", "grad_norm/vision.*")["hold"] == 2
    # The combined series, not vision.2's alone, clears: the largest layer below 5 for two steps.
    ingest(run, (3, "grad_norm/vision.0", "", 4.0), (3, "grad_norm/vision.2", "", 1.0))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.2", "firing", 2)]
    ingest(run, (4, "grad_norm/vision.1", "", 4.5))
    assert _alerts(run) == [("vision", "", "grad_norm/vision.2", "resolved", 2)]


def test_a_non_finite_layer_wins_the_combined_series_of_a_non_finite_rule(project, run, make_rule, ingest):
    make_rule(project, name="nan", key="actor/*", combine="max", condition="not_finite")
    ingest(
        run, (0, "actor/entropy", "", 1.0), (0, "actor/pg_loss", "", float("inf")), (0, "actor/kl", "", 9.0)
    )
    assert _alerts(run) == [("nan", "", "actor/pg_loss", "firing", 0)]


def test_a_rule_ignores_other_keys_disabled_rules_and_other_projects(
    project, run, make_rule, make_project, other_user, ingest
):
    make_rule(project, name="format", key="reward/format")
    make_rule(project, name="off", enabled=False)
    make_rule(make_project(other_user), name="elsewhere")
    ingest(run, (0, ACC, "geo", 0.0))
    assert _alerts(run) == []


def test_two_runs_and_two_rules_each_get_their_own_alert(project, make_run, make_rule, ingest):
    first, second = make_run(project), make_run(project)
    make_rule(project, name="low")
    make_rule(project, name="very low", threshold=0.2)
    ingest(first, (0, ACC, "geo", 0.1))
    ingest(second, (0, ACC, "geo", 0.3))
    assert _alerts(first) == [("low", "geo", ACC, "firing", 0), ("very low", "geo", ACC, "firing", 0)]
    assert _alerts(second) == [("low", "geo", ACC, "firing", 0)]


def test_a_non_finite_rule_on_a_prefix_opens_one_alert_per_source(project, run, make_rule, ingest):
    make_rule(project, name="nan", key="actor/*", condition="not_finite")
    ingest(run, (0, "actor/pg_loss", "", None), (0, "actor/entropy", "", None), (0, "actor/kl", "", 0.1))
    assert _alerts(run) == [("nan", "", "actor/pg_loss", "firing", 0)]


# ---- run scope -----------------------------------------------------------------------------------


def test_run_ids_narrow_a_rule_to_those_runs(project, run, make_run, make_rule, ingest):
    other = make_run(project)
    make_rule(project, name="only the other", run_ids=[other.pk])
    make_rule(project, name="only this", run_ids=[run.pk])
    ingest(run, (0, ACC, "geo", 0.1))
    assert _alerts(run) == [("only this", "geo", ACC, "firing", 0)]


def test_run_tags_narrow_a_rule_to_runs_over_a_source_so_tagged(
    project, make_source, make_run, make_rule, ingest
):
    from control.models import Tag

    detection, chart = (
        Tag.objects.create(project=project, name="detection"),
        Tag.objects.create(project=project, name="chart"),
    )
    tagged = make_source(project, name="synth_detection")
    tagged.tags.add(detection)
    make_source(project, name="unused_chart").tags.add(chart)  # tagged, but in no run
    plain = make_source(project, name="synth_math")
    det_run = make_run(project, sources=[plain, tagged])
    math_run = make_run(project, sources=[plain])
    make_rule(project, name="detection runs", run_tags=["chart", "detection"])
    make_rule(project, name="chart runs", run_tags=["chart"])
    for r in (det_run, math_run):
        ingest(r, (0, ACC, "synth_math", 0.1))
    assert _alerts(det_run) == [("detection runs", "synth_math", ACC, "firing", 0)]
    assert _alerts(math_run) == []


# ---- de-duplication, acknowledgement, auto-resolution, cooldown ----------------------------------


def test_a_firing_alert_stays_open_when_the_rule_does_not_resolve_by_itself(project, run, make_rule, ingest):
    make_rule(project, name="r")  # auto_resolve_steps 0
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, *[(step, ACC, "geo", 0.9) for step in range(1, 30)])
    assert _alerts(run) == [("r", "geo", ACC, "firing", 0)]


def test_an_alert_resolves_itself_after_so_many_clear_steps(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="r", auto_resolve_steps=2)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.8))
    ingest(run, (2, ACC, "geo", 0.1))  # holds again: the clear count starts over
    ingest(run, (3, ACC, "geo", 0.8))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 0)]
    ingest(run, (4, ACC, "geo", 0.8))
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0)]
    alert = Alert.objects.get(run=run)
    assert alert.resolved_at is not None and alert.resolved_at >= alert.fired_at
    assert alert.resolved_by is None


def test_de_duplication_holds_while_acknowledged(project, run, make_rule, ingest):
    from control.models import Alert
    from control.services.alerts import alert_acknowledge

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    alert_acknowledge(alert=Alert.objects.get(run=run), user=project.created_by)
    ingest(run, (1, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "acknowledged", 0)]


def test_an_acknowledged_alert_waits_for_a_person_unless_the_rule_resolves_it(
    project, run, make_rule, ingest
):
    from control.models import Alert
    from control.services.alerts import alert_acknowledge

    make_rule(project, name="by hand")
    make_rule(project, name="by itself", auto_resolve_steps=1)
    ingest(run, (0, ACC, "geo", 0.1))
    for alert in Alert.objects.filter(run=run):
        alert_acknowledge(alert=alert, user=project.created_by)
    ingest(run, (1, ACC, "geo", 0.8))
    assert _alerts(run) == [
        ("by hand", "geo", ACC, "acknowledged", 0),
        ("by itself", "geo", ACC, "resolved", 0),
    ]


def test_the_cooldown_holds_back_a_new_alert_and_then_lets_it_fire(project, run, make_rule, ingest):
    from control.models import Alert, AlertState
    from control.services.alerts import alert_resolve

    rule = make_rule(project, name="r", cooldown_seconds=600)
    ingest(run, (0, ACC, "geo", 0.1))
    alert_resolve(alert=Alert.objects.get(run=run), user=project.created_by)
    ingest(run, (1, ACC, "geo", 0.1))  # still bad, within the cooldown: nothing
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0)]
    # Ten minutes and a second later: the time it fired, moved back rather than waited for.
    row = AlertState.objects.get(rule=rule, run=run, source="geo", key=ACC)
    assert row.state["fired_step"] == 0
    row.state = {**row.state, "fired_at": row.state["fired_at"] - 601}
    row.save()
    ingest(run, (2, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0), ("r", "geo", ACC, "firing", 2)]


def test_the_cooldown_outlasts_an_auto_resolution(project, run, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=600, auto_resolve_steps=1)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.9))  # resolves
    ingest(run, (2, ACC, "geo", 0.1))  # bad again within the cooldown: nothing
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0)]


def test_no_cooldown_fires_again_at_once_after_resolution(project, run, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=0, auto_resolve_steps=1)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (1, ACC, "geo", 0.9))
    ingest(run, (2, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0), ("r", "geo", ACC, "firing", 2)]


def test_the_cooldown_is_per_source(project, run, make_rule, ingest):
    make_rule(project, name="r", cooldown_seconds=3600)
    ingest(run, (0, ACC, "geo", 0.1))
    ingest(run, (0, ACC, "chart", 0.1))
    assert [a[1] for a in _alerts(run)] == ["geo", "chart"]


# ---- rate ----------------------------------------------------------------------------------------


def _rate_rule(make_rule, project, **fields):
    values = {
        "name": "reward errors",
        "kind": "rate",
        "key": "reward_errors",
        "denominator_key": "count",
        "condition": "above",
        "threshold": 0.01,
    }
    return make_rule(project, **{**values, **fields})


def test_a_rate_with_both_halves_in_one_batch(project, run, make_rule, ingest):
    from control.models import Alert

    _rate_rule(make_rule, project)
    ingest(
        run,
        (0, "reward_errors", "geo", 0.0),
        (0, "count", "geo", 8.0),
        (1, "reward_errors", "geo", 1.0),
        (1, "count", "geo", 8.0),
        (1, "reward_errors", "chart", 0.0),
        (1, "count", "chart", 8.0),
    )
    assert _alerts(run) == [("reward errors", "geo", "reward_errors", "firing", 1)]
    alert = Alert.objects.get(run=run)
    assert alert.value == 0.125
    assert alert.message == "reward errors: geo reward_errors / count = 0.125 at step 1, above 0.01"


@pytest.mark.parametrize("first", ["reward_errors", "count"])
def test_a_rate_whose_halves_come_in_two_batches(first, project, run, make_rule, ingest):
    rule = _rate_rule(make_rule, project)
    halves = {"reward_errors": 2.0, "count": 8.0}
    second = "count" if first == "reward_errors" else "reward_errors"
    ingest(run, (5, first, "geo", halves[first]))
    assert _alerts(run) == []
    pending = [2.0, None] if first == "reward_errors" else [None, 8.0]
    assert _state(rule, run, "geo", "reward_errors") == {"pending": {"5": pending}}
    ingest(run, (5, second, "geo", halves[second]))
    assert _alerts(run) == [("reward errors", "geo", "reward_errors", "firing", 5)]
    assert _state(rule, run, "geo", "reward_errors")["pending"] == {}


def test_a_rate_over_a_zero_denominator_is_not_judged(project, run, make_rule, ingest):
    _rate_rule(make_rule, project)
    ingest(run, (0, "reward_errors", "geo", 3.0), (0, "count", "geo", 0.0))
    assert _alerts(run) == []


def test_a_rate_needs_window_consecutive_steps(project, run, make_rule, ingest):
    _rate_rule(make_rule, project, window=2)
    # 1/8, 0/8, 1/8, 2/8: the streak of two ends at step 3.
    for step, errors in enumerate([1.0, 0.0, 1.0, 2.0]):
        ingest(run, (step, "reward_errors", "geo", errors), (step, "count", "geo", 8.0))
        assert len(_alerts(run)) == (1 if step == 3 else 0)
    assert _alerts(run) == [("reward errors", "geo", "reward_errors", "firing", 3)]


# ---- stored state, replays -----------------------------------------------------------------------


def test_the_state_is_read_back_so_a_restarted_process_neither_forgets_nor_fires_twice(
    project, run, make_rule, ingest
):
    from control.models import Alert, Run
    from control.services.alerts import alert_resolve, alert_rules_evaluate
    from control.services.metrics import PointIn

    rule = make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", 0.2))
    assert _state(rule, run, "geo", ACC) == {
        "last": 1,
        "hold": 2,
        "clear": 0,
        "since": 0,
        "since_value": 0.1,
    }
    # The next request, in whatever process: the streak goes on from the stored state.
    ingest(Run.objects.get(pk=run.pk), (2, ACC, "geo", 0.3))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 2)]
    # Once resolved, judging the same points again (a restarted process re-evaluating) opens nothing.
    alert_resolve(alert=Alert.objects.get(run=run), user=project.created_by)
    points = [PointIn(step=s, key=ACC, source="geo", value=v) for s, v in [(0, 0.1), (1, 0.2), (2, 0.3)]]
    assert alert_rules_evaluate(run=Run.objects.get(pk=run.pk), points=points) == []
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 2)]


def test_a_change_window_fills_across_requests(project, run, make_rule, ingest):
    from control.models import Run

    rule = make_rule(
        project, name="drop", kind="change", key="reward/final", condition="drop", threshold=0.5, window=3
    )
    for step, value in enumerate([0.6, 0.62, 0.58]):
        ingest(Run.objects.get(pk=run.pk), (step, "reward/final", "geo", value))
    assert _state(rule, run, "geo", "reward/final") == {
        "last": 2,
        "recent": [[0, 0.6], [1, 0.62], [2, 0.58]],
        "seen": 3,
    }
    ingest(Run.objects.get(pk=run.pk), (3, "reward/final", "geo", 0.2))
    assert _alerts(run) == [("drop", "geo", "reward/final", "firing", 3)]


def test_a_replayed_batch_fires_nothing_new(project, run, make_rule, ingest):
    from control.models import Alert
    from control.services.alerts import alert_resolve

    make_rule(project, name="r")
    batch = [(0, ACC, "geo", 0.1), (1, ACC, "geo", 0.2)]
    ingest(run, *batch)
    assert _alerts(run) == [("r", "geo", ACC, "firing", 0)]
    alert_resolve(alert=Alert.objects.get(run=run), user=project.created_by)
    ingest(run, *batch)
    assert _alerts(run) == [("r", "geo", ACC, "resolved", 0)]


def test_a_step_older_than_the_last_judged_is_not_judged(project, run, make_rule, ingest):
    make_rule(project, name="r")
    ingest(run, (5, ACC, "geo", 0.9))
    ingest(run, (3, ACC, "geo", 0.1))
    assert _alerts(run) == []
    ingest(run, (6, ACC, "geo", 0.1))
    assert _alerts(run) == [("r", "geo", ACC, "firing", 6)]


def test_changing_what_a_rule_judges_starts_its_state_afresh(project, run, make_rule, ingest):
    from control.models import AlertState
    from control.services.alerts import alert_rule_update

    rule = make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", 0.1))
    # Not what it judges: the streak of two is kept, and the third bad step fires.
    alert_rule_update(rule=rule, severity="error", cooldown_seconds=60, auto_resolve_steps=4)
    assert AlertState.objects.filter(rule=rule).count() == 1
    alert_rule_update(rule=rule, threshold=0.4)
    assert AlertState.objects.filter(rule=rule).count() == 0
    ingest(run, (1, ACC, "chart", 0.1))
    alert_rule_update(rule=rule, combine="max")
    assert AlertState.objects.filter(rule=rule).count() == 0
    ingest(run, (2, ACC, "geo", 0.1))  # the first bad step of the new rule
    assert _alerts(run) == []
    assert _state(rule, run, "geo", ACC)["hold"] == 1


def test_keeping_the_state_through_an_update_of_other_settings(project, run, make_rule, ingest):
    from control.services.alerts import alert_rule_update

    rule = make_rule(project, name="r", window=3)
    ingest(run, (0, ACC, "geo", 0.1), (1, ACC, "geo", 0.1))
    alert_rule_update(rule=rule, name="renamed", window=3, severity="info")
    ingest(run, (2, ACC, "geo", 0.1))
    assert _alerts(run) == [("renamed", "geo", ACC, "firing", 2)]


# ---- the IoU threshold's switch ------------------------------------------------------------------


def _drop_rule(make_rule, project):
    return make_rule(
        project,
        name="final reward drop",
        kind="change",
        key="reward/final",
        condition="drop",
        threshold=0.5,
        window=4,
    )


def test_a_reward_drop_right_after_the_iou_threshold_rose_says_so(project, run, make_rule, ingest):
    from control.models import Alert

    _drop_rule(make_rule, project)
    for step in range(8):
        iou = 0.85 if step < 6 else 0.95
        reward = 0.6 if step < 7 else 0.1
        ingest(
            run,
            (step, "detection/iou_threshold", "", iou),
            (step, "reward/final", "synth_detection", reward),
            (step, "reward/final", "synth_math", 0.6),
        )
    assert _alerts(run) == [("final reward drop", "synth_detection", "reward/final", "firing", 7)]
    assert Alert.objects.get(run=run).message == (
        "final reward drop: synth_detection reward/final fell from 0.6 (median of steps 3–6) to 0.1"
        " at step 7, right after the IoU threshold rose to 0.95 at step 6"
    )


def test_a_switch_long_before_a_drop_is_not_mentioned(project, run, make_rule, ingest):
    from control.models import Alert

    _drop_rule(make_rule, project)
    points = []
    for step in range(31):
        points.append((step, "detection/iou_threshold", "", 0.85 if step < 6 else 0.95))
        points.append((step, "reward/final", "synth_detection", 0.6 if step < 30 else 0.1))
    ingest(run, *points)
    assert Alert.objects.get(run=run).message == (
        "final reward drop: synth_detection reward/final fell from 0.6 (median of steps 26–29) to 0.1"
        " at step 30"
    )


def test_a_threshold_on_a_reward_mentions_a_falling_switch_too(project, run, make_rule, ingest):
    from control.models import Alert

    make_rule(project, name="low", key="reward/final", threshold=0.3)
    ingest(run, (10, "detection/iou_threshold", "", 0.95), (10, "reward/final", "geo", 0.5))
    ingest(run, (11, "detection/iou_threshold", "", 0.75), (11, "reward/final", "geo", 0.25))
    assert Alert.objects.get(run=run).message == (
        "low: geo reward/final = 0.25 at step 11, below 0.3,"
        " right after the IoU threshold fell to 0.75 at step 11"
    )


# ---- run state and stalls ------------------------------------------------------------------------


def _lifecycle_rule(project, states=("failed", "lost")):
    from control.services.alerts import alert_rule_create

    return alert_rule_create(
        project=project,
        user=project.created_by,
        name="run died",
        kind="lifecycle",
        lifecycle_states=list(states),
        severity="error",
    )


@pytest.mark.parametrize(
    ("end", "error", "message"),
    [
        (
            "failed",
            "CUDA out of memory",
            "run died: run 'r1' is failed at step 4, attempt 1 (CUDA out of memory)",
        ),
        ("lost", "", "run died: run 'r1' is lost at step 4, attempt 1"),
        ("succeeded", "", None),
        ("cancelled", "", None),
    ],
)
def test_a_lifecycle_rule_fires_when_a_run_reaches_one_of_its_states(
    end, error, message, project, make_run, ingest
):
    from control.models import Alert
    from control.services.run_lifecycle import run_transition

    _lifecycle_rule(project)
    run = make_run(project, name="r1")
    ingest(run, (4, ACC, "geo", 0.9))
    _to_running(run)
    assert _alerts(run) == []  # queued, submitted, running: none of its states
    run_transition(run=run, to=end, error=error)
    if message is None:
        assert _alerts(run) == []
        return
    alert = Alert.objects.get(run=run)
    assert (alert.rule.name, alert.source, alert.key, alert.step, alert.severity) == (
        "run died",
        "",
        "",
        4,
        "error",
    )
    assert alert.message == message


def test_a_lifecycle_rule_with_a_builtin_adds_its_hint_and_respects_its_scope(project, make_run):
    from control.models import Alert
    from control.services.run_lifecycle import run_transition

    rule = _lifecycle_rule(project, states=["failed"])
    rule.builtin = "failed"
    rule.save()
    run = make_run(project, name="r2")
    run_transition(run=run, to="queued", attempt=1)
    run_transition(run=run, to="failed")
    assert Alert.objects.get(run=run).message == (
        "run died: run 'r2' is failed before its first step, attempt 1; see the run's error and its log"
    )
    other = make_run(project, name="r3")
    rule.run_ids = [run.pk]
    rule.save()
    run_transition(run=other, to="queued", attempt=1)
    run_transition(run=other, to="failed")
    assert _alerts(other) == []


def _stall_rule(project, minutes=15, **fields):
    from control.services.alerts import alert_rule_create

    return alert_rule_create(
        project=project,
        user=project.created_by,
        name="stalled",
        kind="stall",
        stall_minutes=minutes,
        **fields,
    )


def test_a_stalled_run_fires_once_and_its_next_point_resolves_it(project, run, make_run, ingest):
    from django.utils import timezone

    from control.models import Alert, Run
    from control.services.alerts import alerts_check_stalls

    _stall_rule(project)
    _to_running(run)
    ingest(run, (3, ACC, "geo", 0.9))
    # The last point came twenty minutes ago.
    Run.objects.filter(pk=run.pk).update(last_metric_at=timezone.now() - timedelta(minutes=20))
    waiting = make_run(project)  # pending, and as quiet: not watched
    Run.objects.filter(pk=waiting.pk).update(last_metric_at=timezone.now() - timedelta(minutes=20))
    last = Run.objects.get(pk=run.pk).last_metric_at
    assert alerts_check_stalls(now=last + timedelta(minutes=14, seconds=59)) == []
    opened = alerts_check_stalls(now=last + timedelta(minutes=16, seconds=30))
    assert [(a.run_id, a.step, a.message) for a in opened] == [
        (run.pk, 3, f"stalled: run '{run.name}' reported nothing for 16 minutes (last step 3)")
    ]
    assert alerts_check_stalls(now=last + timedelta(minutes=30)) == []  # still open: not again
    assert _alerts(run) == [("stalled", "", "", "firing", 3)]
    assert _alerts(waiting) == []
    ingest(Run.objects.get(pk=run.pk), (4, ACC, "geo", 0.9))
    assert _alerts(run) == [("stalled", "", "", "resolved", 3)]
    assert Alert.objects.get(run=run).resolved_at is not None


def test_a_running_run_without_points_stalls_from_when_its_attempt_started(project, run):
    from control.services.alerts import alerts_check_stalls

    _stall_rule(project, minutes=10)
    running = _to_running(run)
    started = running.attempt_started_at
    assert alerts_check_stalls(now=started + timedelta(minutes=9)) == []
    opened = alerts_check_stalls(now=started + timedelta(minutes=11))
    assert [a.message for a in opened] == [
        f"stalled: run '{run.name}' reported nothing for 11 minutes (last step -1)"
    ]
    assert _alerts(run) == [("stalled", "", "", "firing", 0)]


def test_a_stall_rule_scoped_to_other_runs_or_disabled_stays_quiet(project, run, make_run):
    from control.services.alerts import alerts_check_stalls

    _stall_rule(project, minutes=10, run_ids=[make_run(project).pk])
    running = _to_running(run)
    assert alerts_check_stalls(now=running.attempt_started_at + timedelta(hours=1)) == []


# ---- alerts by hand ------------------------------------------------------------------------------


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


def test_resolving_by_hand_records_who(project, run, make_rule, ingest):
    from control.models import Alert
    from control.services.alerts import alert_resolve

    make_rule(project, name="r")
    ingest(run, (0, ACC, "geo", 0.1))
    alert_resolve(alert=Alert.objects.get(run=run), user=project.created_by)
    alert = Alert.objects.get(run=run)
    assert (alert.state, alert.resolved_by) == ("resolved", project.created_by)


# ---- what a rule may be created with -------------------------------------------------------------

STATES = "pending, queued, submitted, running, succeeded, failed, cancelling, cancelled, lost"


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"kind": "bogus"}, "kind", "must be one of threshold, change, not_finite, rate, stall, lifecycle"),
        ({"key": ""}, "key", "required: the metric key (or prefix*) the rule watches"),
        ({"condition": "sideways"}, "condition", "a threshold rule needs one of above, below"),
        ({"condition": "drop"}, "condition", "a threshold rule needs one of above, below"),
        ({"kind": "change", "condition": "above"}, "condition", "a change rule needs one of drop, rise"),
        (
            {"kind": "rate", "condition": "rise", "denominator_key": "count"},
            "condition",
            "a rate rule needs one of above, below",
        ),
        (
            {"kind": "not_finite", "condition": "above"},
            "condition",
            "a not_finite rule needs one of not_finite",
        ),
        ({"threshold": float("nan")}, "threshold", "must be a finite number"),
        ({"threshold": float("inf")}, "threshold", "must be a finite number"),
        ({"window": 0}, "window", "must be between 1 and 1000 steps"),
        ({"window": 1001}, "window", "must be between 1 and 1000 steps"),
        (
            {"kind": "change", "condition": "drop", "threshold": 0.0},
            "threshold",
            "a change rule needs a positive fraction or number of deviations",
        ),
        (
            {"kind": "change", "condition": "drop", "threshold": -0.5},
            "threshold",
            "a change rule needs a positive fraction or number of deviations",
        ),
        (
            {"kind": "change", "condition": "rise", "change_by": "zscore"},
            "change_by",
            "must be fraction or mad",
        ),
        (
            {"kind": "change", "condition": "rise", "change_by": "mad", "threshold": 5.0, "window": 2},
            "window",
            "a median/MAD baseline needs a window of at least 3 steps",
        ),
        (
            {"kind": "rate", "condition": "above"},
            "denominator_key",
            "required: the key the rate divides by (e.g. count)",
        ),
        ({"kind": "stall", "stall_minutes": 0}, "stall_minutes", "must be at least 1 minute"),
        (
            {"kind": "lifecycle", "lifecycle_states": ["failed", "exploded"]},
            "lifecycle_states",
            f"a non-empty list of run states: {STATES}",
        ),
        (
            {"kind": "lifecycle", "lifecycle_states": []},
            "lifecycle_states",
            f"a non-empty list of run states: {STATES}",
        ),
        (
            {"kind": "lifecycle", "lifecycle_states": "failed"},
            "lifecycle_states",
            f"a non-empty list of run states: {STATES}",
        ),
        ({"severity": "fatal"}, "severity", "must be info, warning or error"),
        ({"run_ids": ["7"]}, "run_ids", "a list of run ids"),
        ({"run_ids": [True]}, "run_ids", "a list of run ids"),
        ({"run_ids": 7}, "run_ids", "a list of run ids"),
        ({"run_tags": [1]}, "run_tags", "a list of tag names"),
    ],
)
def test_alert_rule_create_says_what_to_fix(fields, field, message, project):
    from control.errors import DomainError
    from control.models import AlertRule
    from control.services.alerts import alert_rule_create

    values = {"name": "x", "key": ACC, "condition": "below", "threshold": 0.5, **fields}
    with pytest.raises(DomainError) as caught:
        alert_rule_create(project=project, user=project.created_by, **values)
    assert caught.value.message == f"{field}: {message}"
    assert caught.value.fields == {field: [message]}
    assert not AlertRule.objects.filter(project=project).exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "stall", "key": "", "stall_minutes": 1},
        {"kind": "lifecycle", "key": "", "lifecycle_states": ["lost"]},
        {"kind": "change", "condition": "drop", "change_by": "mad", "threshold": 3.0, "window": 3},
        {"kind": "rate", "condition": "below", "denominator_key": "count", "window": 1000},
        {
            "kind": "threshold",
            "key": "grad_norm/*",
            "condition": "above",
            "run_ids": [1, 2],
            "run_tags": ["x"],
        },
    ],
)
def test_alert_rule_create_takes_what_each_kind_needs(fields, project):
    from control.services.alerts import alert_rule_create

    values = {"name": "x", "key": ACC, "condition": "below", "threshold": 0.5, **fields}
    rule = alert_rule_create(project=project, user=project.created_by, **values)
    assert rule.pk is not None and rule.kind == fields["kind"]


def test_alert_rule_create_refuses_a_duplicate_name(project, make_rule):
    from control.errors import Conflict

    make_rule(project, name="r")
    with pytest.raises(Conflict, match="an alert rule named 'r' already exists in this project"):
        make_rule(project, name="r")


def test_a_rule_cannot_notify_another_projects_channel(project, make_project, other_user, make_rule):
    from control.errors import DomainError
    from control.models import AlertRule, NotificationChannel
    from control.services.alerts import alert_rule_update

    mine = NotificationChannel.objects.create(project=project, name="mine", kind="email", email="a@b.example")
    theirs = NotificationChannel.objects.create(
        project=make_project(other_user), name="theirs", kind="webhook", url="https://hooks.example/x"
    )
    with pytest.raises(DomainError) as caught:
        make_rule(project, name="r", channels=[mine, theirs])
    assert caught.value.message == f"channels: channel {theirs.pk} belongs to another project"
    assert not AlertRule.objects.filter(project=project).exists()
    rule = make_rule(project, name="r", channels=[mine])
    with pytest.raises(DomainError, match=f"channels: channel {theirs.pk} belongs to another project"):
        alert_rule_update(rule=rule, channels=[theirs])
    assert list(AlertRule.objects.get(pk=rule.pk).channels.all()) == [mine]


def test_alert_rule_update_checks_what_it_is_given(project, make_rule):
    from control.errors import DomainError
    from control.models import AlertRule
    from control.services.alerts import alert_rule_update

    rule = make_rule(project, name="r", window=3)
    with pytest.raises(DomainError, match="window: must be between 1 and 1000 steps"):
        alert_rule_update(rule=rule, window=0)
    assert AlertRule.objects.get(pk=rule.pk).window == 3


# ---- two ingests at once -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_ingests_open_one_alert_and_both_succeed(project, run, make_rule, ingest):
    """A live batch and a late replay of older steps of the same run, evaluated at the same time.

    The live ingest holds its transaction open after opening its alert; the replay then waits on
    the run's row (every ingest updates its last_metric_at) until the first commits, and judges
    its older step against the state the live one stored: not at all.
    """
    import threading
    import time

    from django.db import connection, transaction

    from control.models import MetricPoint, Run
    from control.services.metrics import PointIn, metric_points_ingest

    ingest(run, (5, ACC, "geo", 0.9))  # last_step 5, no rule yet
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
    assert _alerts(run) == [("r", "geo", ACC, "firing", 6)]
    assert MetricPoint.objects.filter(run=run).count() == 3

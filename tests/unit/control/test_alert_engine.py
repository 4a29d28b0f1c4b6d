"""How one rule judges one series, point by point: control.services.alert_engine, by hand.

Every expected value below is worked out in the comment beside it; nothing here needs a database.
"""

from __future__ import annotations

import doctest

import pytest

from control.services import alert_engine
from control.services.alert_engine import (
    MAD_SCALE,
    RuleSpec,
    Verdict,
    change_holds,
    clears,
    condition_holds,
    describe,
    fires,
    glob_matches,
    judge,
    source_matches,
)


def judge_all(spec: RuleSpec, points, state: dict | None = None) -> tuple[dict, list[Verdict]]:
    """Judge ``(step, value)`` points in order; the final state and every verdict."""
    state = {} if state is None else state
    verdicts = []
    for step, value in points:
        state, verdict = judge(spec, state, step, value)
        verdicts.append(verdict)
    return state, verdicts


def held(verdicts: list[Verdict]) -> list[bool | None]:
    return [v.holds for v in verdicts]


def fired_at(spec: RuleSpec, points, verdicts: list[Verdict]) -> list[int]:
    return [step for (step, _), v in zip(points, verdicts, strict=True) if fires(spec, v)]


def test_the_doctests_hold():
    assert doctest.testmod(alert_engine).failed == 0


# ---- threshold ---------------------------------------------------------------------------------

BELOW = RuleSpec("threshold", "below", 0.5, window=3)


def test_a_threshold_fires_once_the_condition_held_for_window_consecutive_steps():
    points = [(0, 0.4), (1, 0.3), (2, 0.2), (3, 0.1)]
    state, verdicts = judge_all(BELOW, points)
    assert held(verdicts) == [True, True, True, True]
    assert [v.streak for v in verdicts] == [1, 2, 3, 4]
    # The streak began at step 0 with 0.4, and every later verdict says so.
    assert {(v.since, v.since_value) for v in verdicts} == {(0, 0.4)}
    assert fired_at(BELOW, points, verdicts) == [2, 3]
    assert state == {"last": 3, "hold": 4, "clear": 0, "since": 0, "since_value": 0.4}


def test_a_clear_step_restarts_the_streak():
    points = [(0, 0.4), (1, 0.4), (2, 0.6), (3, 0.4), (4, 0.4), (5, 0.4)]
    state, verdicts = judge_all(BELOW, points)
    assert held(verdicts) == [True, True, False, True, True, True]
    assert [v.streak for v in verdicts] == [1, 2, 0, 1, 2, 3]
    assert fired_at(BELOW, points, verdicts) == [5]
    assert (verdicts[2].since, verdicts[5].since, verdicts[5].since_value) == (None, 3, 0.4)
    assert state["clear"] == 0 and state["hold"] == 3


def test_clear_steps_are_counted_and_a_holding_step_sets_them_back_to_zero():
    spec = RuleSpec("threshold", "below", 0.5)
    state, _ = judge_all(spec, [(0, 0.1), (1, 0.7), (2, 0.8)])
    assert (state["hold"], state["clear"]) == (0, 2)
    state, _ = judge_all(spec, [(3, 0.2)], state)
    assert (state["hold"], state["clear"]) == (1, 0)


@pytest.mark.parametrize(
    ("condition", "threshold", "value", "holds"),
    [
        ("below", 0.5, 0.49, True),
        ("below", 0.5, 0.5, False),  # strictly below
        ("above", 2.0, 2.01, True),
        ("above", 2.0, 2.0, False),  # strictly above
        ("above", 2.0, -5.0, False),
        ("below", 0.0, -1e-9, True),
    ],
)
def test_threshold_conditions_are_strict(condition, threshold, value, holds):
    _, verdict = judge(RuleSpec("threshold", condition, threshold), {}, 0, value)
    assert verdict.holds is holds
    assert condition_holds(condition, value, threshold) is holds


def test_a_late_or_replayed_step_is_not_judged_twice():
    state, _ = judge_all(BELOW, [(4, 0.1), (5, 0.1)])
    for step in (5, 4, 0):
        again, verdict = judge(BELOW, state, step, 0.1)
        assert verdict == Verdict(holds=None)
        assert again == state
    # The next step carries on the streak of two: the third consecutive holding step.
    _, verdict = judge(BELOW, state, 6, 0.1)
    assert (verdict.streak, verdict.since) == (3, 4)
    assert fires(BELOW, verdict)


def test_judge_leaves_the_state_it_was_given_alone():
    state = {"last": 1, "hold": 2, "clear": 0, "since": 0, "since_value": 0.3}
    copy = dict(state)
    new, _ = judge(BELOW, state, 2, 0.2)
    assert state == copy
    assert new["hold"] == 3


def test_a_non_finite_value_is_not_judged_by_a_threshold_rule_and_keeps_the_streak():
    points = [(0, 0.4), (1, None), (2, 0.4), (3, 0.4)]
    state, verdicts = judge_all(BELOW, points)
    assert held(verdicts) == [True, None, True, True]
    assert [v.streak for v in verdicts] == [1, 0, 2, 3]
    assert fired_at(BELOW, points, verdicts) == [3]
    # The step of the non-finite value was seen, though: replaying it judges nothing.
    assert judge(BELOW, state, 1, 0.1)[1].holds is None
    assert condition_holds("below", None, 0.5) is False


def test_not_finite_holds_on_a_missing_value_only():
    spec = RuleSpec("not_finite", "not_finite")
    points = [(0, 1e308), (1, None), (2, -3.0), (3, float("nan")), (4, float("inf"))]
    _, verdicts = judge_all(spec, points)
    assert held(verdicts) == [False, True, False, True, True]
    assert fired_at(spec, points, verdicts) == [1, 3, 4]
    assert (verdicts[1].since, verdicts[1].since_value) == (1, None)
    assert condition_holds("not_finite", None, 0.0) is True
    assert condition_holds("not_finite", 5.0, 0.0) is False


def test_a_rate_is_judged_like_a_threshold_on_the_ratio():
    spec = RuleSpec("rate", "above", 0.01, window=2)
    # 0/8, 1/8, 2/8, a zero denominator (no ratio), 1/8
    points = [(0, 0.0), (1, 0.125), (2, 0.25), (3, None), (4, 0.125)]
    _, verdicts = judge_all(spec, points)
    assert held(verdicts) == [False, True, True, None, True]
    assert [v.streak for v in verdicts] == [0, 1, 2, 0, 3]
    assert fired_at(spec, points, verdicts) == [2, 4]


# ---- change ------------------------------------------------------------------------------------


def test_a_drop_by_fraction_is_measured_against_the_trailing_median():
    spec = RuleSpec("change", "drop", 0.5, window=3)
    # The first three points fill the window; step 3 is judged against median(0.6, 0.62, 0.58) = 0.6:
    # a drop is below 0.6 - 0.5 * 0.6 = 0.3.
    points = [(0, 0.6), (1, 0.62), (2, 0.58), (3, 0.2)]
    state, verdicts = judge_all(spec, points)
    assert held(verdicts) == [None, None, None, True]
    drop = verdicts[3]
    assert (drop.baseline, drop.baseline_steps, drop.scale) == (0.6, (0, 2), None)
    assert (drop.streak, drop.since, drop.since_value) == (1, 3, 0.2)
    assert fired_at(spec, points, verdicts) == [3]
    # The window keeps the last three values, the dropped one included.
    assert state["recent"] == [[1, 0.62], [2, 0.58], [3, 0.2]]
    assert state["seen"] == 4


@pytest.mark.parametrize(
    ("condition", "window", "value", "holds", "baseline"),
    [
        # median(0.6, 0.62, 0.58) = 0.6, margin 0.5 * 0.6 = 0.3
        ("drop", [0.6, 0.62, 0.58], 0.29, True, 0.6),
        ("drop", [0.6, 0.62, 0.58], 0.31, False, 0.6),
        ("drop", [0.6, 0.62, 0.58], 5.0, False, 0.6),
        # median(1, 2, 3) = 2, margin 1: a rise is above 3
        ("rise", [1.0, 2.0, 3.0], 3.5, True, 2.0),
        ("rise", [1.0, 2.0, 3.0], 2.9, False, 2.0),
        ("rise", [1.0, 2.0, 3.0], -9.0, False, 2.0),
        # median(-2, -4, -3) = -3, margin 0.5 * |-3| = 1.5: a drop is below -4.5, a rise above -1.5
        ("drop", [-2.0, -4.0, -3.0], -5.0, True, -3.0),
        ("drop", [-2.0, -4.0, -3.0], -4.0, False, -3.0),
        ("rise", [-2.0, -4.0, -3.0], -1.0, True, -3.0),
        ("rise", [-2.0, -4.0, -3.0], -2.0, False, -3.0),
        # median(-1, 0, 1) = 0: no fraction of it to judge by
        ("drop", [-1.0, 0.0, 1.0], -100.0, None, 0.0),
        ("rise", [-1.0, 0.0, 1.0], 100.0, None, 0.0),
        # an even window: median(1, 2, 3, 4) = 2.5, margin 1.25: a drop is below 1.25
        ("drop", [4.0, 1.0, 3.0, 2.0], 1.2, True, 2.5),
        ("drop", [4.0, 1.0, 3.0, 2.0], 1.3, False, 2.5),
    ],
)
def test_change_by_fraction(condition, window, value, holds, baseline):
    spec = RuleSpec("change", condition, 0.5, window=len(window))
    assert change_holds(spec, value, window) == (holds, baseline, None)
    # The same through judge(): the window filled by the points before.
    points = [*enumerate(window), (len(window), value)]
    _, verdicts = judge_all(spec, points)
    assert verdicts[-1].holds is holds
    if holds is not None:
        assert (verdicts[-1].baseline, verdicts[-1].baseline_steps) == (baseline, (0, len(window) - 1))


@pytest.mark.parametrize(
    ("condition", "window", "value", "holds", "baseline", "scale"),
    [
        # median(1, 2, 3, 4, 100) = 3; |x - 3| = 2, 1, 0, 1, 97, whose median is 1: s = 1.4826.
        # Three deviations: a rise is above 3 + 3 * 1.4826 = 7.4478, a drop below -1.4478.
        # The outlier 100 moves neither the median nor the scale.
        ("rise", [1.0, 2.0, 3.0, 4.0, 100.0], 8.0, True, 3.0, MAD_SCALE),
        ("rise", [1.0, 2.0, 3.0, 4.0, 100.0], 7.0, False, 3.0, MAD_SCALE),
        ("drop", [1.0, 2.0, 3.0, 4.0, 100.0], -2.0, True, 3.0, MAD_SCALE),
        ("drop", [1.0, 2.0, 3.0, 4.0, 100.0], -1.0, False, 3.0, MAD_SCALE),
        # median(10, 12, 14) = 12; |x - 12| = 2, 0, 2, median 2: s = 2.9652; a rise is above 20.8956
        ("rise", [10.0, 12.0, 14.0], 21.0, True, 12.0, 2 * MAD_SCALE),
        ("rise", [10.0, 12.0, 14.0], 20.8, False, 12.0, 2 * MAD_SCALE),
        # an even window: median(1, 2, 3, 4) = 2.5; |x - 2.5| = 1.5, 0.5, 0.5, 1.5, median 1
        ("rise", [1.0, 2.0, 3.0, 4.0], 7.0, True, 2.5, MAD_SCALE),
        ("rise", [1.0, 2.0, 3.0, 4.0], 6.9, False, 2.5, MAD_SCALE),
        # a flat window has no spread: nothing to judge by, however far the value goes
        ("rise", [5.0, 5.0, 5.0], 1e9, None, 5.0, 0.0),
        # most of the window flat: the median deviation is still 0
        ("rise", [5.0, 5.0, 5.0, 9.0], 1e9, None, 5.0, 0.0),
    ],
)
def test_change_by_mad(condition, window, value, holds, baseline, scale):
    spec = RuleSpec("change", condition, 3.0, window=len(window), change_by="mad")
    got_holds, got_baseline, got_scale = change_holds(spec, value, window)
    assert (got_holds, got_baseline) == (holds, baseline)
    assert got_scale == pytest.approx(scale, abs=1e-12)
    points = [*enumerate(window), (len(window), value)]
    _, verdicts = judge_all(spec, points)
    assert verdicts[-1].holds is holds
    if holds is not None:
        assert verdicts[-1].scale == pytest.approx(scale, abs=1e-12)


def test_a_change_rule_waits_for_its_warmup_and_its_window():
    spec = RuleSpec("change", "drop", 0.5, window=3, warmup=5)
    # The window is full after three points, but nothing is judged before five points were seen.
    points = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 1.0), (4, 0.1), (5, 0.1)]
    state, verdicts = judge_all(spec, points)
    assert held(verdicts) == [None, None, None, None, None, True]
    # Step 5 against the last three: median(1.0, 1.0, 0.1) = 1.0, and 0.1 < 0.5.
    assert (verdicts[5].baseline, verdicts[5].baseline_steps) == (1.0, (2, 4))
    assert state["seen"] == 6

    # Without a warm-up the window alone decides: the fourth point is the first judged.
    spec = RuleSpec("change", "drop", 0.5, window=3)
    _, verdicts = judge_all(spec, points)
    assert held(verdicts) == [None, None, None, False, True, True]


def test_a_warmup_shorter_than_the_window_still_waits_for_the_window():
    spec = RuleSpec("change", "drop", 0.5, window=4, warmup=1)
    _, verdicts = judge_all(spec, [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.1), (4, 0.1)])
    assert held(verdicts) == [None, None, None, None, True]


def test_the_window_keeps_only_the_last_w_finite_values():
    spec = RuleSpec("change", "drop", 0.5, window=3)
    points = [(0, 10.0), (1, 10.0), (2, 10.0), (3, 1.0), (4, 1.0), (5, 1.0), (6, 0.4)]
    state, verdicts = judge_all(spec, points)
    # step 3: median(10, 10, 10) = 10, 1 < 5; step 4: median(10, 10, 1) = 10, 1 < 5;
    # step 5: median(10, 1, 1) = 1, 1 is not < 0.5; step 6: median(1, 1, 1) = 1, 0.4 < 0.5.
    assert held(verdicts) == [None, None, None, True, True, False, True]
    assert [v.baseline for v in verdicts[3:]] == [10.0, 10.0, 1.0, 1.0]
    assert verdicts[6].baseline_steps == (3, 5)
    assert state["recent"] == [[4, 1.0], [5, 1.0], [6, 0.4]]


def test_a_non_finite_value_neither_enters_the_window_nor_counts_towards_the_warmup():
    spec = RuleSpec("change", "drop", 0.5, window=2, warmup=2)
    points = [(0, 1.0), (1, None), (2, 1.0), (3, None), (4, 0.2)]
    state, verdicts = judge_all(spec, points)
    # Two finite points seen before step 4: judged against median(1.0, 1.0) = 1.0.
    assert held(verdicts) == [None, None, None, None, True]
    assert verdicts[4].baseline_steps == (0, 2)
    assert (state["seen"], state["recent"], state["last"]) == (3, [[2, 1.0], [4, 0.2]], 4)


def test_a_change_fires_at_every_holding_step():
    spec = RuleSpec("change", "drop", 0.5, window=3)
    points = [(0, 1.0), (1, 1.0), (2, 1.0), (3, 0.1), (4, 0.1)]
    _, verdicts = judge_all(spec, points)
    # step 4: median(1.0, 1.0, 0.1) = 1.0; the streak is 2 and a change needs 1.
    assert [v.streak for v in verdicts] == [0, 0, 0, 1, 2]
    assert fired_at(spec, points, verdicts) == [3, 4]


def test_a_change_rule_knows_only_drop_and_rise():
    with pytest.raises(ValueError, match="a change rule drops or rises, not 'above'"):
        change_holds(RuleSpec("change", "above", 0.5), 1.0, [1.0, 2.0])


def test_kinds_not_judged_point_by_point_are_refused():
    for kind in ("stall", "lifecycle"):
        with pytest.raises(ValueError, match=f"rule kind '{kind}' is not judged point by point"):
            judge(RuleSpec(kind), {}, 0, 1.0)


# ---- fires, clears -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "verdict", "expected"),
    [
        (RuleSpec("threshold", window=3), Verdict(True, streak=2), False),
        (RuleSpec("threshold", window=3), Verdict(True, streak=3), True),
        (RuleSpec("threshold", window=3), Verdict(True, streak=7), True),
        (RuleSpec("rate", window=2), Verdict(True, streak=1), False),
        (RuleSpec("rate", window=2), Verdict(True, streak=2), True),
        (RuleSpec("threshold", window=0), Verdict(True, streak=1), True),
        # a change or a non-finite value fires at once, whatever its window
        (RuleSpec("change", "drop", window=20), Verdict(True, streak=1), True),
        (RuleSpec("not_finite", "not_finite", window=5), Verdict(True, streak=1), True),
        (RuleSpec("threshold", window=1), Verdict(False), False),
        (RuleSpec("threshold", window=1), Verdict(None), False),
    ],
)
def test_fires(spec, verdict, expected):
    assert fires(spec, verdict) is expected


@pytest.mark.parametrize(
    ("state", "steps", "expected"),
    [
        ({"clear": 100}, 0, False),  # 0: resolved by hand only
        ({"clear": 2}, 3, False),
        ({"clear": 3}, 3, True),
        ({"clear": 4}, 3, True),
        ({}, 1, False),
    ],
)
def test_clears(state, steps, expected):
    assert clears(state, steps) is expected


def test_an_alert_clears_after_so_many_judged_clear_steps():
    spec = RuleSpec("threshold", "below", 0.5)
    state, _ = judge_all(spec, [(0, 0.1), (1, 0.9), (2, None), (3, 0.9)])
    # Step 2 (a non-finite value) was not judged: two clear steps, not three.
    assert (clears(state, 2), clears(state, 3)) == (True, False)


# ---- matching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("reward/final", "reward/final", True),
        ("reward/final", "reward/finals", False),
        ("reward/final", "reward/fina", False),
        ("grad_norm/vision.*", "grad_norm/vision.0", True),
        ("grad_norm/vision.*", "grad_norm/vision.31", True),
        ("grad_norm/vision.*", "grad_norm/language.0", False),
        ("grad_norm/vision.*", "grad_norm/vision", False),
        ("actor/*", "actor/pg_loss", True),
        ("actor/*", "critic/pg_loss", False),
        ("*", "anything/at_all", True),
        ("*", "", True),
        ("reward/*", "Reward/final", False),  # case matters
    ],
)
def test_glob_matches(pattern, name, expected):
    assert glob_matches(pattern, name) is expected


@pytest.mark.parametrize(
    ("pattern", "source", "expected"),
    [
        ("", "", True),  # every source, the global one included
        ("", "synth_math", True),
        ("synth_math", "synth_math", True),
        ("synth_math", "synth_mathx", False),
        ("synth_math", "", False),
        ("synth_*", "synth_detection", True),
        ("synth_*", "", False),
        ("synth_*", "real_chart", False),
    ],
)
def test_source_matches(pattern, source, expected):
    assert source_matches(pattern, source) is expected


# ---- messages ----------------------------------------------------------------------------------


def _verdict_at(spec: RuleSpec, points) -> Verdict:
    return judge_all(spec, points)[1][-1]


def test_describe_a_threshold_at_one_step():
    spec = RuleSpec("threshold", "below", 0.5)
    verdict = _verdict_at(spec, [(12, 0.125)])
    message = describe(
        rule_name="accuracy collapse",
        spec=spec,
        key="reward/accuracy",
        source="geo",
        step=12,
        value=0.125,
        verdict=verdict,
    )
    assert message == "accuracy collapse: geo reward/accuracy = 0.125 at step 12, below 0.5"


def test_describe_a_threshold_held_for_several_steps_with_a_hint():
    spec = RuleSpec("threshold", "above", 0.5, window=3)
    verdict = _verdict_at(spec, [(15, 0.92), (16, 0.9), (17, 0.875)])
    message = describe(
        rule_name="responses truncated",
        spec=spec,
        key="response_length/clip_ratio",
        source="synth_math",
        step=17,
        value=0.875,
        verdict=verdict,
        hint="see Per source → Response length",
    )
    assert message == (
        "responses truncated: synth_math response_length/clip_ratio = 0.875 at step 17, above 0.5"
        " for 3 steps (since step 15, 0.92); see Per source → Response length"
    )


def test_describe_the_global_source_names_the_key_alone_and_rounds_to_four_digits():
    spec = RuleSpec("threshold", "above", 1000.0)
    message = describe(
        rule_name="grad",
        spec=spec,
        key="grad_norm/total",
        source="",
        step=3,
        value=1234567.0,
        verdict=_verdict_at(spec, [(3, 1234567.0)]),
    )
    assert message == "grad: grad_norm/total = 1.235e+06 at step 3, above 1000"


def test_describe_a_drop_by_fraction_with_context_and_hint():
    spec = RuleSpec("change", "drop", 0.5, window=3)
    verdict = _verdict_at(spec, [(40, 0.6), (41, 0.62), (42, 0.58), (43, 0.08)])
    message = describe(
        rule_name="final reward drop",
        spec=spec,
        key="reward/final",
        source="synth_detection",
        step=43,
        value=0.08,
        verdict=verdict,
        context="right after the IoU threshold rose to 0.95 at step 42",
        hint="see Per source → Rewards",
    )
    assert message == (
        "final reward drop: synth_detection reward/final fell from 0.6 (median of steps 40–42) to 0.08"
        " at step 43, right after the IoU threshold rose to 0.95 at step 42; see Per source → Rewards"
    )


def test_describe_a_rise_by_mad_counts_the_robust_deviations():
    spec = RuleSpec("change", "rise", 3.0, window=5, change_by="mad")
    points = [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0), (4, 100.0), (5, 8.0)]
    verdict = _verdict_at(spec, points)
    message = describe(
        rule_name="length explosion",
        spec=spec,
        key="response_length/mean",
        source="synth_math",
        step=5,
        value=8.0,
        verdict=verdict,
    )
    # (8 - 3) / 1.4826 = 3.372...
    assert message == (
        "length explosion: synth_math response_length/mean rose from 3 (median of steps 0–4) to 8"
        " at step 5, 3.4 robust deviations"
    )


def test_describe_a_non_finite_value():
    spec = RuleSpec("not_finite", "not_finite")
    message = describe(
        rule_name="nan loss",
        spec=spec,
        key="actor/pg_loss",
        source="",
        step=3,
        value=None,
        verdict=_verdict_at(spec, [(3, None)]),
    )
    assert message == "nan loss: actor/pg_loss is NaN or infinite at step 3"


def test_describe_a_rate_at_one_step_and_over_several():
    spec = RuleSpec("rate", "above", 0.01)
    one = describe(
        rule_name="reward errors",
        spec=spec,
        key="reward_errors",
        source="geo",
        step=7,
        value=0.125,
        verdict=_verdict_at(spec, [(7, 0.125)]),
        denominator_key="count",
    )
    assert one == "reward errors: geo reward_errors / count = 0.125 at step 7, above 0.01"
    several = describe(
        rule_name="reward errors",
        spec=spec,
        key="reward_errors",
        source="geo",
        step=8,
        value=0.25,
        verdict=_verdict_at(spec, [(6, 0.0), (7, 0.125), (8, 0.25)]),
        denominator_key="count",
    )
    assert several == (
        "reward errors: geo reward_errors / count = 0.25 at step 8, above 0.01 for 2 steps (since step 7)"
    )

"""The built-in rules every project starts with: created once, restored when deleted, and quiet on a
healthy run while each catches the failure it exists for."""

from __future__ import annotations

from collections import Counter

import pytest

pytestmark = pytest.mark.django_db

RULE_FIELDS = (
    "name",
    "kind",
    "key",
    "source",
    "condition",
    "change_by",
    "combine",
    "threshold",
    "window",
    "warmup",
    "denominator_key",
    "stall_minutes",
    "lifecycle_states",
    "severity",
    "auto_resolve_steps",
)


def _builtins(project) -> Counter:
    return Counter(project.alert_rules.exclude(builtin="").values_list("builtin", flat=True))


@pytest.fixture
def fresh(user):
    """A project created the ordinary way: with its default rules."""
    from control.services.projects import project_create

    return project_create(user=user, name="defaults")


def test_a_new_project_gets_every_default_once(fresh, user):
    from control.models import AlertRule
    from control.services.alert_defaults import DEFAULT_RULES

    assert _builtins(fresh) == Counter(dict.fromkeys(DEFAULT_RULES, 1))
    assert fresh.alert_rules.count() == len(DEFAULT_RULES)
    for builtin, fields in DEFAULT_RULES.items():
        rule = fresh.alert_rules.get(builtin=builtin)
        defaults = {name: AlertRule._meta.get_field(name).get_default() for name in RULE_FIELDS}
        expected = {**defaults, **fields}
        assert {name: getattr(rule, name) for name in RULE_FIELDS} == expected, builtin
        assert (rule.enabled, rule.created_by) == (True, user)


def test_a_project_made_without_defaults_has_none(make_project, user):
    assert make_project(user).alert_rules.count() == 0


def test_every_default_passes_the_checks_a_rule_made_by_hand_does(make_project, user):
    from control.services.alert_defaults import DEFAULT_RULES
    from control.services.alerts import alert_rule_create

    project = make_project(user)
    for fields in DEFAULT_RULES.values():
        alert_rule_create(project=project, user=user, **fields)
    assert project.alert_rules.count() == len(DEFAULT_RULES)


def test_asking_again_creates_nothing(fresh, user):
    from control.services.alert_defaults import alert_defaults_ensure

    before = list(fresh.alert_rules.order_by("id").values_list("id", flat=True))
    assert alert_defaults_ensure(project=fresh, user=user) == []
    assert list(fresh.alert_rules.order_by("id").values_list("id", flat=True)) == before


def test_a_deleted_default_comes_back_as_it_was_and_a_tuned_one_is_left_alone(fresh, user):
    from control.services.alert_defaults import DEFAULT_RULES, alert_defaults_ensure

    fresh.alert_rules.get(builtin="reward_drop").delete()
    fresh.alert_rules.filter(builtin="truncation").update(name="clipped", threshold=0.8, enabled=False)
    created = alert_defaults_ensure(project=fresh, user=user)
    assert [(r.builtin, r.name, r.threshold, r.window) for r in created] == [
        ("reward_drop", "final reward drop", 0.5, 10)
    ]
    assert _builtins(fresh) == Counter(dict.fromkeys(DEFAULT_RULES, 1))
    tuned = fresh.alert_rules.get(builtin="truncation")
    assert (tuned.name, tuned.threshold, tuned.enabled) == ("clipped", 0.8, False)


def test_a_users_rule_holding_a_defaults_name_is_left_alone(make_project, make_rule, user):
    from control.services.alert_defaults import DEFAULT_RULES, alert_defaults_ensure

    project = make_project(user)
    mine = make_rule(project, name="final reward drop", key="reward/final", threshold=0.2)
    created = alert_defaults_ensure(project=project, user=user)
    assert sorted(r.builtin for r in created) == sorted(set(DEFAULT_RULES) - {"reward_drop"})
    mine.refresh_from_db()
    assert (mine.kind, mine.threshold, mine.builtin) == ("threshold", 0.2, "")
    assert project.alert_rules.filter(name="final reward drop").count() == 1
    assert alert_defaults_ensure(project=project, user=user) == []


# ---- the defaults on a run -------------------------------------------------------------------------

SOURCES = ("synth_math", "synth_detection", "synth_chart")
# Small noise, worked out so that every ten consecutive steps hold each offset twice (median 0) and
# every twenty hold |offset| = 0, 1, 1, 2, 2 (in units) four times each (median absolute deviation 1).
NOISE = (0.0, 2.0, -1.0, 1.0, -2.0)


def _step(step: int, **bad) -> list[tuple]:
    """One step of the run: every source healthy, except what ``bad`` names as (source, key) -> value."""
    points = []
    for i, source in enumerate(SOURCES):
        noise = NOISE[(step + i) % 5]
        healthy = {
            "reward/final": 0.6 + noise / 100,
            "response_length/mean": 100.0 + noise,
            "response_length/clip_ratio": 0.05,
            "reward_errors": 0.0,
            "count": 8.0,
        }
        for key, value in healthy.items():
            points.append((step, key, source, bad.get(f"{source}:{key}", value)))
    noise = NOISE[step % 5]
    for key, value in {
        "actor/pg_loss": -0.02 + noise / 1000,
        "actor/entropy": 1.1,
        "grad_norm/vision.0": 1.0 + noise / 100,
        "grad_norm/vision.1": 0.8 + noise / 100,
        "grad_norm/language.0": 2.0 + noise / 100,
    }.items():
        points.append((step, key, "", bad.get(f":{key}", value)))
    return points


def _alerts(run) -> list[tuple]:
    from control.models import Alert

    return list(
        Alert.objects.filter(run=run)
        .order_by("id")
        .values_list("rule__name", "source", "key", "state", "step")
    )


def test_the_defaults_stay_quiet_on_a_healthy_run_and_catch_each_failure(
    fresh, make_source, make_run, ingest
):
    from control.models import Alert

    run = make_run(fresh, sources=[make_source(fresh, name=name) for name in SOURCES])
    for step in range(15):
        ingest(run, *_step(step))
    assert _alerts(run) == []

    # One source's final reward collapses; it stays down.
    collapsed = {"synth_detection:reward/final": 0.05}
    ingest(run, *_step(15, **collapsed))
    assert _alerts(run) == [("final reward drop", "synth_detection", "reward/final", "firing", 15)]
    # The last ten steps' rewards of synth_detection hold each offset twice: the median is 0.6.
    assert Alert.objects.get(run=run).message == (
        "final reward drop: synth_detection reward/final fell from 0.6 (median of steps 5–14) to 0.05"
        " at step 15; see Per source → Rewards and the IoU threshold section"
    )

    ingest(run, *_step(16, **collapsed, **{":actor/pg_loss": float("nan")}))
    ingest(run, *_step(17, **collapsed, **{"synth_math:reward_errors": 1.0}))
    for step in (18, 19, 20):
        ingest(run, *_step(step, **collapsed, **{"synth_chart:response_length/clip_ratio": 0.9}))

    assert _alerts(run) == [
        ("final reward drop", "synth_detection", "reward/final", "firing", 15),
        ("non-finite loss or gradient", "", "actor/pg_loss", "firing", 16),
        ("reward errors", "synth_math", "reward_errors", "firing", 17),
        ("responses truncated", "synth_chart", "response_length/clip_ratio", "firing", 20),
    ]
    messages = dict(Alert.objects.filter(run=run).values_list("rule__builtin", "message"))
    assert messages["non_finite"] == (
        "non-finite loss or gradient: actor/pg_loss is NaN or infinite at step 16;"
        " see Optimisation; the job's log shows where the loss diverged"
    )
    assert messages["reward_errors"] == (
        "reward errors: synth_math reward_errors / count = 0.125 at step 17, above 0.01;"
        " see System → reward errors and the job's log for verifier timeouts"
    )
    assert messages["truncation"] == (
        "responses truncated: synth_chart response_length/clip_ratio = 0.9 at step 20, above 0.5"
        " for 3 steps (since step 18, 0.9); see Per source → Response length;"
        " raise rollout.max_response_length or check the prompt"
    )
    assert {
        a.severity for a in Alert.objects.filter(run=run, rule__builtin__in=["non_finite", "reward_errors"])
    } == {"error"}


def test_the_change_defaults_judge_once_their_window_is_full_and_stay_quiet_on_noise(
    fresh, make_source, make_run, ingest
):
    from control.models import AlertState

    run = make_run(fresh, sources=[make_source(fresh, name=name) for name in SOURCES])
    ingest(run, *[p for step in range(25) for p in _step(step)])
    assert _alerts(run) == []
    # Twenty values in the window of response_length/mean: judged at steps 20-24, clear each time.
    state = AlertState.objects.get(
        run=run, rule__builtin="length_explosion", source="synth_math", key="response_length/mean"
    ).state
    assert (state["seen"], len(state["recent"]), state["clear"]) == (25, 20, 5)
    # The vision layers are one series, the largest of them at each step (vision.0, about 1.0).
    vision = AlertState.objects.get(run=run, rule__builtin="vision_grad_spike")
    assert (vision.source, vision.key, vision.state["clear"]) == ("", "grad_norm/vision.*", 5)
    assert [v for _, v in vision.state["recent"][:5]] == pytest.approx([1.0, 1.02, 0.99, 1.01, 0.98])


def test_a_vision_gradient_spike_and_a_length_explosion_fire_on_their_own_series(
    fresh, make_source, make_run, ingest
):
    from control.models import Alert

    run = make_run(fresh, sources=[make_source(fresh, name=name) for name in SOURCES])
    ingest(run, *[p for step in range(20) for p in _step(step)])
    # The largest vision layer over steps 0-19 is vision.0 (1.0 +- 0.02): median 1.0, MAD 0.01,
    # s = 0.014826; ten deviations: above 1.14826. vision.1, at 0.8 until now, jumps to 1.2.
    # synth_chart's length: median 100, MAD 1, s = 1.4826; eight deviations: above 111.86.
    ingest(run, *_step(20, **{":grad_norm/vision.1": 1.2, "synth_chart:response_length/mean": 112.0}))
    assert sorted(_alerts(run)) == [
        ("response length explosion", "synth_chart", "response_length/mean", "firing", 20),
        ("vision gradient spike", "", "grad_norm/vision.1", "firing", 20),
    ]
    messages = dict(Alert.objects.filter(run=run).values_list("rule__builtin", "message"))
    # (1.2 - 1) / 0.014826 = 13.5; (112 - 100) / 1.4826 = 8.1
    assert messages["vision_grad_spike"] == (
        "vision gradient spike: grad_norm/vision.1 (the largest of grad_norm/vision.*) rose from 1"
        " (median of steps 0–19) to 1.2 at step 20, 13.5 robust deviations;"
        " see Optimisation → Gradient norm per layer (vision)"
    )
    assert messages["length_explosion"] == (
        "response length explosion: synth_chart response_length/mean rose from 100 (median of steps 0–19)"
        " to 112 at step 20, 8.1 robust deviations;"
        " see Per source → Response length and the source's truncation"
    )

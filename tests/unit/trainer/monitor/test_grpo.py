"""GRPO group statistics, response-length drift and dynamic-sampling counts, against hand-computed values."""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch

from trainer.algo import group_advantages
from trainer.monitor import (
    DRIFT_BASELINE_STEPS,
    GroupStats,
    LengthBaseline,
    SampleRecord,
    baselines_from_state,
    baselines_state,
    dynamic_sampling_metrics,
    group_stats,
    grpo_family,
    grpo_metrics,
    length_drift_metrics,
    sample_metrics,
    update_length_baselines,
)


def rec(
    source: str,
    group: int | None,
    final: float | None,
    advantage: float | None = None,
    length: int = 10,
) -> SampleRecord:
    rewards = {"accuracy_reward": 0.0} if final is None else {"accuracy_reward": 0.0, "final_reward": final}
    return SampleRecord(source, "mathverify", rewards, "", length, False, group=group, advantage=advantage)


# -- one group ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([0.0, 0.0, 0.0, 0.0], GroupStats(4, 0.0, True)),  # all equal: no signal
        ([0.3, 0.3, 0.3], GroupStats(3, 0.0, True)),  # equal, and not exactly representable
        ([1.0], GroupStats(1, 0.0, True)),  # a group of one
        ([1.0, 0.0], GroupStats(2, 0.5, False)),  # mean 0.5, sqrt((0.25 + 0.25) / 2) = 0.5
        ([1.0, 0.0, 0.0, 0.0], GroupStats(4, math.sqrt(3) / 4, False)),  # mean 0.25: sqrt(0.75/4)
    ],
)
def test_group_stats(rewards: list[float], expected: GroupStats) -> None:
    got = group_stats(rewards)
    assert (got.size, got.zero_std) == (expected.size, expected.zero_std)
    assert got.std == pytest.approx(expected.std)


def test_group_stats_mixed_rewards_population_std() -> None:
    # mean (1 + 0.55 + 0.1) / 3 = 0.55; deviations 0.45, 0, -0.45 -> sqrt(2 * 0.2025 / 3) = 0.367423
    assert group_stats([1.0, 0.55, 0.1]).std == pytest.approx(0.367423, abs=1e-6)


def test_an_empty_group_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one reward"):
        group_stats([])


# -- a step's groups per source ---------------------------------------------------------------

# math: group 0 = (1, 0) mixed, group 1 = (0.5, 0.5) constant; det: group 2 = (0, 0, 0) constant,
# group 3 = (1, 0, 0) mixed. Advantages as the engine gives them (unbiased std, +1e-6).
STEP = [
    rec("math", 0, 1.0, 0.7071),
    rec("math", 0, 0.0, -0.7071),
    rec("math", 1, 0.5, 0.0),
    rec("math", 1, 0.5, 0.0),
    rec("det", 2, 0.0, 0.0),
    rec("det", 2, 0.0, 0.0),
    rec("det", 2, 0.0, 0.0),
    rec("det", 3, 1.0, 1.1547),
    rec("det", 3, 0.0, -0.5774),
    rec("det", 3, 0.0, -0.5774),
]


def test_grpo_metrics_per_source_and_for_the_whole_step() -> None:
    got = grpo_metrics(STEP)
    assert got[("math", "grpo/frac_zero_std")] == pytest.approx(0.5)  # 1 of 2 groups constant
    assert got[("math", "grpo/reward_std")] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert got[("math", "grpo/adv_abs_mean")] == pytest.approx(0.35355)  # (0.7071 * 2) / 4
    assert got[("det", "grpo/frac_zero_std")] == pytest.approx(0.5)
    # group 3: mean 1/3, population std sqrt((4/9 + 1/9 + 1/9) / 3) = sqrt(2)/3 = 0.471405
    assert got[("det", "grpo/reward_std")] == pytest.approx(0.235702, abs=1e-6)  # (0 + 0.471405) / 2
    assert got[("det", "grpo/adv_abs_mean")] == pytest.approx(0.384917, abs=1e-6)  # (1.1547 + 2 * 0.5774) / 6
    assert got[(None, "grpo/frac_zero_std")] == pytest.approx(0.5)  # 2 of 4
    assert got[(None, "grpo/reward_std")] == pytest.approx(0.242851, abs=1e-6)  # (0.5 + 0 + 0 + 0.471405) / 4
    assert got[(None, "grpo/adv_abs_mean")] == pytest.approx(0.37237, abs=1e-5)  # 3.7237 / 10


def test_the_advantages_of_the_table_are_the_engines() -> None:
    rewards = torch.tensor([r.rewards["final_reward"] for r in STEP])
    advantages = group_advantages(rewards, group_ids=[r.group for r in STEP])
    assert advantages.tolist() == pytest.approx([r.advantage for r in STEP], abs=1e-4)


def test_groups_follow_the_group_id_not_the_order() -> None:
    interleaved = [rec("m", 0, 1.0), rec("m", 1, 0.0), rec("m", 0, 0.0), rec("m", 1, 0.0)]
    got = grpo_family(interleaved)
    assert got["grpo/frac_zero_std"] == pytest.approx(0.5)  # group 1 = (0, 0)
    assert got["grpo/reward_std"] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert got["grpo/adv_abs_mean"] is None  # no advantages given


def test_every_group_constant() -> None:
    got = grpo_metrics(
        [rec("m", 0, 0.0, 0.0), rec("m", 0, 0.0, 0.0), rec("m", 1, 1.0, 0.0), rec("m", 1, 1.0, 0.0)]
    )
    assert got[("m", "grpo/frac_zero_std")] == 1.0
    assert got[("m", "grpo/reward_std")] == 0.0
    assert got[("m", "grpo/adv_abs_mean")] == 0.0


def test_a_single_response_is_a_constant_group() -> None:
    got = grpo_metrics([rec("m", 4, 0.8, 0.0)])
    assert got == {
        ("m", "grpo/frac_zero_std"): 1.0,
        ("m", "grpo/reward_std"): 0.0,
        ("m", "grpo/adv_abs_mean"): 0.0,
        (None, "grpo/frac_zero_std"): 1.0,
        (None, "grpo/reward_std"): 0.0,
        (None, "grpo/adv_abs_mean"): 0.0,
    }


def test_a_missing_final_reward_counts_zero_as_in_the_engine() -> None:
    assert grpo_family([rec("m", 0, None), rec("m", 0, 0.0)])["grpo/frac_zero_std"] == 1.0


def test_no_records_or_no_groups_give_no_value_and_no_nan() -> None:
    assert grpo_family([]) == {
        "grpo/frac_zero_std": None,
        "grpo/reward_std": None,
        "grpo/adv_abs_mean": None,
    }
    assert grpo_metrics([]) == {}
    assert grpo_metrics([rec("eval", None, 1.0), rec("eval", None, 0.0)]) == {}  # evaluation records


def test_sample_metrics_carry_the_grpo_family() -> None:
    metrics = sample_metrics(STEP)
    assert metrics[("math", "grpo/frac_zero_std")] == pytest.approx(0.5)
    assert metrics[(None, "grpo/adv_abs_mean")] == pytest.approx(0.37237, abs=1e-5)
    assert all(math.isfinite(v) for v in metrics.values())


# -- dynamic sampling counts -------------------------------------------------------------------


def test_dynamic_sampling_metrics() -> None:
    got = dynamic_sampling_metrics({"math": 3, "det": 1}, {"det": 1, "ocr": 2})
    assert got == {
        ("math", "grpo/groups_refilled"): 3.0,
        ("math", "grpo/groups_dropped"): 0.0,
        ("det", "grpo/groups_refilled"): 1.0,
        ("det", "grpo/groups_dropped"): 1.0,
        ("ocr", "grpo/groups_refilled"): 0.0,
        ("ocr", "grpo/groups_dropped"): 2.0,
        (None, "grpo/groups_refilled"): 4.0,
        (None, "grpo/groups_dropped"): 3.0,
    }


def test_dynamic_sampling_metrics_with_nothing_to_refill() -> None:
    assert dynamic_sampling_metrics({}, {}) == {
        (None, "grpo/groups_refilled"): 0.0,
        (None, "grpo/groups_dropped"): 0.0,
    }


# -- response-length drift ---------------------------------------------------------------------


def lengths(source: str, *values: int) -> list[SampleRecord]:
    return [rec(source, None, 0.0, length=v) for v in values]


def test_the_first_step_has_drift_zero() -> None:
    step = lengths("m", 10, 20) + lengths("d", 30)
    baselines = update_length_baselines({}, step)
    assert baselines == {
        "m": LengthBaseline(2, 30, 1),
        "d": LengthBaseline(1, 30, 1),
        None: LengthBaseline(3, 60, 1),
    }
    assert length_drift_metrics(step, baselines) == {
        ("m", "response_length/drift"): 0.0,
        ("d", "response_length/drift"): 0.0,
        (None, "response_length/drift"): 0.0,
    }


def test_drift_against_the_first_steps_then_a_fixed_baseline() -> None:
    baselines = update_length_baselines({}, lengths("m", 10, 20))  # m: 2 responses, 30 tokens
    second = lengths("m", 40, 50)
    baselines = update_length_baselines(baselines, second, steps=2)  # m: 4 responses, 120 tokens
    # mean now (40 + 50) / 2 = 45, baseline 120 / 4 = 30
    assert length_drift_metrics(second, baselines)[("m", "response_length/drift")] == pytest.approx(15.0)
    third = lengths("m", 100)
    baselines = update_length_baselines(baselines, third, steps=2)  # two steps counted: fixed
    assert baselines["m"] == LengthBaseline(4, 120, 2)
    assert length_drift_metrics(third, baselines)[("m", "response_length/drift")] == pytest.approx(70.0)


def test_a_source_seen_late_gets_its_own_baseline() -> None:
    baselines: dict = {}
    for _ in range(DRIFT_BASELINE_STEPS + 1):
        baselines = update_length_baselines(baselines, lengths("m", 10))
    late = lengths("m", 12) + lengths("new", 7)
    baselines = update_length_baselines(baselines, late)
    assert baselines["new"] == LengthBaseline(1, 7, 1)
    assert baselines["m"] == LengthBaseline(
        DRIFT_BASELINE_STEPS, 10 * DRIFT_BASELINE_STEPS, DRIFT_BASELINE_STEPS
    )
    drift = length_drift_metrics(late, baselines)
    assert drift[("new", "response_length/drift")] == 0.0
    assert drift[("m", "response_length/drift")] == pytest.approx(2.0)  # 12 - 10
    # all: (12 + 7) / 2 = 9.5 against 10 (the first five steps, all of "m")
    assert drift[(None, "response_length/drift")] == pytest.approx(-0.5)


def test_drift_without_a_baseline_or_records_is_omitted() -> None:
    assert length_drift_metrics(lengths("m", 10), {}) == {}
    assert length_drift_metrics([], {"m": LengthBaseline(1, 10, 1)}) == {}
    assert update_length_baselines({"m": LengthBaseline(1, 10, 1)}, []) == {"m": LengthBaseline(1, 10, 1)}


def test_baselines_survive_their_state_form() -> None:
    baselines = {"m": LengthBaseline(2, 30, 1), None: LengthBaseline(5, 70, 2)}
    state = baselines_state(baselines)
    assert state == [["m", 2, 30, 1], [None, 5, 70, 2]]
    assert baselines_from_state(state) == baselines
    with pytest.raises(ValueError, match="must be a string or None, got 3"):
        baselines_from_state([[3, 1, 1, 1]])


def test_docstring_examples() -> None:
    result = doctest.testmod(importlib.import_module("trainer.monitor.grpo"))
    assert result.failed == 0 and result.attempted > 0

"""The pure parts of a step: grouping and advantages, records, token counts, metric assembly."""

from __future__ import annotations

import pytest
import torch

from trainer.engine.metrics import StepTimes, sample_records, step_metrics, step_tokens
from trainer.engine.step import final_rewards, grpo_advantages
from trainer.monitor import LengthBaseline, update_length_baselines
from trainer.rewards import RewardResult

from .factories import DET_RM, MATH_RM, item, result, rollout


def test_advantages_are_computed_within_each_prompt_group() -> None:
    # Prompt-major order, 2 prompts x 2 responses: rewards [1, 0 | 0.5, 0.5].
    rollouts = [rollout(0, 3), rollout(0, 3), rollout(1, 3), rollout(1, 3)]
    results = [result(1.0), result(0.0), result(0.5), result(0.5)]
    advantages = grpo_advantages(rollouts, results)
    # group 0: mean 0.5, unbiased std sqrt(((0.5)^2 + (0.5)^2) / 1) = 0.70711 -> ±0.5 / 0.70711 = ±0.70711
    # group 1: constant rewards -> exactly 0
    assert advantages.tolist() == pytest.approx([0.70711, -0.70711, 0.0, 0.0], abs=1e-4)


def test_groups_follow_prompt_index_not_position() -> None:
    # Interleaved order: group 0 = positions 0 and 2 (rewards 1, 0), group 1 = positions 1 and 3 (0, 0).
    rollouts = [rollout(0, 2), rollout(1, 2), rollout(0, 2), rollout(1, 2)]
    results = [result(1.0), result(0.0), result(0.0), result(0.0)]
    assert grpo_advantages(rollouts, results).tolist() == pytest.approx(
        [0.70711, 0.0, -0.70711, 0.0], abs=1e-4
    )


def test_a_group_of_one_has_advantage_zero() -> None:
    assert grpo_advantages([rollout(0, 1)], [result(1.0)]).tolist() == [0.0]


def test_final_rewards_reads_final_reward_and_counts_a_missing_one_as_zero() -> None:
    rewards = final_rewards([result(0.25), RewardResult({"accuracy_reward": 1.0}), result(1.0)])
    assert rewards.dtype == torch.float32
    assert rewards.tolist() == [0.25, 0.0, 1.0]


def test_sample_records_take_source_and_verifier_from_the_prompt_of_each_rollout() -> None:
    items = [item("math", MATH_RM), item("det", DET_RM)]
    rollouts = [rollout(0, 4, "wait"), rollout(1, 7, "x", clipped=True)]
    results = [result(1.0), result(0.0, error="timeout")]
    records = sample_records(items, rollouts, results)
    assert [(r.data_source, r.verifier, r.response_length, r.clipped, r.reward_error) for r in records] == [
        ("math", "mathverify", 4, False, False),
        ("det", "detection", 7, True, True),
    ]
    assert records[0].response_text == "wait" and records[0].correct


def test_sample_records_refuse_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 rollouts but 1 reward results"):
        sample_records([item("m", MATH_RM)], [rollout(0, 1), rollout(0, 1)], [result(1.0)])


def test_step_tokens_count_each_prompt_once_per_response() -> None:
    # (5 + 3) + (5 + 4) + (8 + 1) = 26
    assert step_tokens([rollout(0, 3), rollout(0, 4), rollout(1, 1, prompt_length=8)]) == 26


def _metrics(step: int = 0, total_steps: int = 30, update: dict | None = None):
    items = [item("math", MATH_RM), item("det", DET_RM)]
    rollouts = [rollout(0, 4, "wait"), rollout(0, 6), rollout(1, 8)]
    results = [result(1.0), result(0.0), result(0.5, accuracy=0.4, error="timeout")]
    return step_metrics(
        sample_records(items, rollouts, results),
        update if update is not None else {"actor/pg_loss": 0.5, "grad_norm/language.0": 2.0},
        times=StepTimes(step=2.0, rollout=1.0, reward=0.5, update=0.25),
        num_tokens=33,
        peak_memory_bytes=1 << 30,
        step=step,
        total_steps=total_steps,
        iou_schedule="dynamic",
    )


def test_step_metrics_merge_every_family_per_source_and_global() -> None:
    metrics = _metrics()
    assert metrics[("math", "count")] == 2.0
    assert metrics[("det", "count")] == 1.0
    assert metrics[(None, "count")] == 3.0
    assert metrics[("det", "reward_errors")] == 1.0 and metrics[(None, "reward_errors")] == 1.0
    assert metrics[("math", "reward/final")] == pytest.approx(0.5)  # (1 + 0) / 2
    assert metrics[(None, "reward/final")] == pytest.approx(0.5)  # (1 + 0 + 0.5) / 3
    assert metrics[("math", "response_length/mean")] == pytest.approx(5.0)  # (4 + 6) / 2
    assert metrics[("math", "reflection/ratio")] == pytest.approx(0.5)  # "wait" in 1 of 2
    assert metrics[(None, "actor/pg_loss")] == 0.5
    assert metrics[(None, "grad_norm/language.0")] == 2.0
    assert metrics[(None, "perf/step_time")] == 2.0
    assert metrics[(None, "perf/rollout_time")] == 1.0
    assert metrics[(None, "perf/reward_time")] == 0.5
    assert metrics[(None, "perf/update_time")] == 0.25
    assert metrics[(None, "perf/tokens_per_s")] == pytest.approx(16.5)  # 33 tokens / 2 s
    assert metrics[(None, "perf/peak_memory")] == pytest.approx(1.0)  # GiB


@pytest.mark.parametrize(
    ("step", "total", "threshold"),
    [
        (0, 30, 0.85),  # 0 / 30 <= 0.10
        (3, 30, 0.85),  # 0.10
        (4, 30, 0.95),  # 0.133 <= 0.25
        (8, 30, 0.99),  # 0.267 > 0.25
    ],
)
def test_step_metrics_log_the_iou_threshold_of_the_step(step: int, total: int, threshold: float) -> None:
    assert _metrics(step, total)[(None, "detection/iou_threshold")] == threshold


def test_step_metrics_drop_non_finite_update_values_and_refuse_unknown_keys() -> None:
    metrics = _metrics(update={"actor/pg_loss": float("nan"), "actor/skipped_steps": 1.0})
    assert (None, "actor/pg_loss") not in metrics
    assert metrics[(None, "actor/skipped_steps")] == 1.0
    with pytest.raises(ValueError, match="unknown update metric 'actor/made_up'"):
        _metrics(update={"actor/made_up": 1.0})


def test_sample_records_carry_group_and_advantage_in_a_training_step() -> None:
    items = [item("math", MATH_RM), item("det", DET_RM)]
    rollouts = [rollout(0, 4), rollout(1, 7), rollout(0, 2)]
    records = sample_records(items, rollouts, [result(1.0), result(0.0), result(0.0)], [0.7, 0.0, -0.7])
    assert [(r.data_source, r.group, r.advantage) for r in records] == [
        ("math", 0, 0.7),
        ("det", 1, 0.0),
        ("math", 0, -0.7),
    ]
    evaluation = sample_records(items, rollouts, [result(1.0), result(0.0), result(0.0)])
    assert all(r.group is None and r.advantage is None for r in evaluation)
    with pytest.raises(ValueError, match="3 rollouts but 2 advantages"):
        sample_records(items, rollouts, [result(1.0), result(0.0), result(0.0)], [0.0, 0.0])


def test_step_metrics_report_the_learning_signal_of_each_source() -> None:
    # math: group 0 = (1, 0), advantages ±0.70711; det: group 1 = (0.5, 0.5), advantages 0
    items = [item("math", MATH_RM), item("det", DET_RM)]
    rollouts = [rollout(0, 4), rollout(0, 6), rollout(1, 8), rollout(1, 10)]
    results = [result(1.0), result(0.0), result(0.5), result(0.5)]
    advantages = grpo_advantages(rollouts, results).tolist()
    records = sample_records(items, rollouts, results, advantages)
    baselines = update_length_baselines({"math": LengthBaseline(2, 8, 1)}, records)
    metrics = step_metrics(
        records,
        {},
        times=StepTimes(step=1.0, rollout=0.5, reward=0.2, update=0.3),
        num_tokens=40,
        peak_memory_bytes=None,
        step=0,
        total_steps=10,
        iou_schedule="dynamic",
        length_baselines=baselines,
        refills=({"det": 1}, {}),
    )
    assert metrics[("math", "grpo/frac_zero_std")] == 0.0
    assert metrics[("det", "grpo/frac_zero_std")] == 1.0
    assert metrics[(None, "grpo/frac_zero_std")] == 0.5  # 1 of 2 groups
    assert metrics[("math", "grpo/reward_std")] == pytest.approx(0.5)  # population std of (1, 0)
    assert metrics[("det", "grpo/reward_std")] == 0.0
    assert metrics[(None, "grpo/reward_std")] == pytest.approx(0.25)  # (0.5 + 0) / 2
    assert metrics[("math", "grpo/adv_abs_mean")] == pytest.approx(0.70711, abs=1e-5)
    assert metrics[("det", "grpo/adv_abs_mean")] == 0.0
    assert metrics[(None, "grpo/adv_abs_mean")] == pytest.approx(0.35355, abs=1e-5)  # 2 * 0.70711 / 4
    # math: baseline (8 + 4 + 6) / 4 = 4.5 after this step, mean now 5 -> drift 0.5; det: first step
    assert metrics[("math", "response_length/drift")] == pytest.approx(0.5)
    assert metrics[("det", "response_length/drift")] == 0.0
    assert metrics[(None, "response_length/drift")] == 0.0  # first step of "all"
    assert metrics[("det", "grpo/groups_refilled")] == 1.0 and metrics[("det", "grpo/groups_dropped")] == 0.0
    assert metrics[(None, "grpo/groups_refilled")] == 1.0


def test_step_metrics_without_dynamic_sampling_have_no_refill_keys() -> None:
    assert not any(k.startswith("grpo/groups_") for _, k in _metrics())

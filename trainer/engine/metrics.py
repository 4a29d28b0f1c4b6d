"""Assembling a step's metrics from what the step produced (DESIGN.md §6); no computation of its own.

The monitor computes every family from records; this module only turns rollouts and reward
results into :class:`~trainer.monitor.SampleRecord` objects and merges the families.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainer.engine.prompts import PromptItem
from trainer.monitor import (
    LengthBaseline,
    Metrics,
    SampleRecord,
    dynamic_sampling_metrics,
    eval_metrics,
    iou_threshold_metric,
    length_drift_metrics,
    perf_metrics,
    sample_metrics,
    update_metrics,
)
from trainer.rewards import RewardResult
from trainer.rewards.schedule import Schedule
from trainer.rollout import Rollout


@dataclass(frozen=True)
class StepTimes:
    """Seconds spent in each phase of one step."""

    step: float
    rollout: float
    reward: float
    update: float


def sample_records(
    items: Sequence[PromptItem],
    rollouts: Sequence[Rollout],
    results: Sequence[RewardResult],
    advantages: Sequence[float] | None = None,
) -> list[SampleRecord]:
    """One record per rollout: its prompt's source and verifier, its rewards and whether scoring failed.

    With ``advantages`` (one per rollout: a training step), each record also carries its GRPO
    group (the rollout's ``prompt_index``) and its advantage.
    """
    if len(rollouts) != len(results):
        raise ValueError(f"{len(rollouts)} rollouts but {len(results)} reward results")
    if advantages is not None and len(advantages) != len(rollouts):
        raise ValueError(f"{len(rollouts)} rollouts but {len(advantages)} advantages")
    records = []
    for position, (rollout, result) in enumerate(zip(rollouts, results, strict=True)):
        item = items[rollout.prompt_index]
        records.append(
            SampleRecord(
                data_source=item.source,
                verifier=item.verifier,
                rewards=result.rewards,
                response_text=rollout.response_text,
                response_length=rollout.response_length,
                clipped=rollout.clipped,
                reward_error=result.error is not None,
                group=None if advantages is None else rollout.prompt_index,
                advantage=None if advantages is None else float(advantages[position]),
            )
        )
    return records


def step_tokens(rollouts: Sequence[Rollout]) -> int:
    """Prompt + response tokens of a step (each response counts its prompt once)."""
    return sum(r.prompt.length + r.response_length for r in rollouts)


def step_metrics(
    records: Sequence[SampleRecord],
    update: Mapping[str, float],
    *,
    times: StepTimes,
    num_tokens: int,
    peak_memory_bytes: int | None,
    step: int,
    total_steps: int,
    iou_schedule: Schedule,
    length_baselines: Mapping[str | None, LengthBaseline] | None = None,
    refills: tuple[Mapping[str, int], Mapping[str, int]] | None = None,
) -> Metrics:
    """Every metric of a training step: per-sample families per source and global, the IoU threshold
    at ``step`` (0-based, as the reward used it), the update's ``actor/*`` and ``grad_norm/*``, ``perf/*``.

    ``length_baselines`` (counting this step) adds ``response_length/drift``; ``refills`` (groups
    refilled and dropped per source, under dynamic sampling) adds ``grpo/groups_*``.
    """
    metrics = sample_metrics(records)
    if length_baselines is not None:
        metrics |= length_drift_metrics(records, length_baselines)
    if refills is not None:
        metrics |= dynamic_sampling_metrics(*refills)
    metrics |= iou_threshold_metric(step, total_steps, iou_schedule)
    metrics |= update_metrics(update)
    metrics |= perf_metrics(
        step_time=times.step,
        rollout_time=times.rollout,
        reward_time=times.reward,
        update_time=times.update,
        num_tokens=num_tokens,
        peak_memory_bytes=peak_memory_bytes,
    )
    return metrics


def evaluation_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """``eval/<component>`` and ``eval/count`` per source and over every source."""
    return eval_metrics(records)

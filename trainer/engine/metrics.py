"""Assembling a step's metrics from what the step produced (DESIGN.md §6); no computation of its own.

The monitor computes every family from records; this module only turns rollouts and reward
results into :class:`~trainer.monitor.SampleRecord` objects and merges the families.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from trainer.engine.prompts import PromptItem
from trainer.monitor import (
    Metrics,
    SampleRecord,
    eval_metrics,
    iou_threshold_metric,
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
    items: Sequence[PromptItem], rollouts: Sequence[Rollout], results: Sequence[RewardResult]
) -> list[SampleRecord]:
    """One record per rollout: its prompt's source and verifier, its rewards and whether scoring failed."""
    if len(rollouts) != len(results):
        raise ValueError(f"{len(rollouts)} rollouts but {len(results)} reward results")
    records = []
    for rollout, result in zip(rollouts, results, strict=True):
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
) -> Metrics:
    """Every metric of a training step: per-sample families per source and global, the IoU threshold
    at ``step`` (0-based, as the reward used it), the update's ``actor/*`` and ``grad_norm/*``, ``perf/*``."""
    metrics = sample_metrics(records)
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

"""The GRPO learning signal of a step: its groups' reward spread, the advantages, length drift.

A GRPO *group* is the n responses to one prompt; it belongs to the data source of its prompt.
A group whose final rewards are all equal carries no learning signal (every advantage is 0), so
the share of such groups, the spread of rewards within groups and the size of the advantages
say whether a source can learn at all (TRL logs the first as ``frac_reward_zero_std``).
Response-length drift compares a source's mean length with its own start (DESIGN.md §6).

Plain Python, no torch: the functions take rewards, records or counts and return numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, SupportsFloat

from trainer.monitor.records import MetricKey, Metrics, SampleRecord, by_source
from trainer.monitor.values import finalize, mean, ratio

# A source's length baseline is its mean response length over the first steps it is drawn in.
DRIFT_BASELINE_STEPS = 5


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Final rewards of one group: how many, their population standard deviation, whether all equal."""

    size: int
    std: float
    zero_std: bool


def group_stats(rewards: Sequence[float]) -> GroupStats:
    """Statistics of one group's final rewards.

    ``std`` is the population standard deviation, sqrt(Σ (r − mean)² / n); it is exactly 0 when
    every reward is equal (``zero_std``), a group of one included.

    >>> group_stats([1.0, 0.0, 0.0, 1.0])
    GroupStats(size=4, std=0.5, zero_std=False)
    """
    if not rewards:
        raise ValueError("a group has at least one reward")
    values = [float(r) for r in rewards]
    if max(values) == min(values):
        return GroupStats(len(values), 0.0, True)
    centre = sum(values) / len(values)
    return GroupStats(len(values), math.sqrt(sum((v - centre) ** 2 for v in values) / len(values)), False)


def final_reward(record: SampleRecord) -> float:
    """The reward GRPO normalises: ``final_reward``, 0 when absent (as the engine counts it)."""
    return float(record.rewards.get("final_reward", 0.0))


def reward_groups(records: Iterable[SampleRecord]) -> dict[int, list[float]]:
    """Final rewards per group id, in order of first occurrence; records without a group are left out."""
    groups: dict[int, list[float]] = {}
    for record in records:
        if record.group is not None:
            groups.setdefault(record.group, []).append(final_reward(record))
    return groups


def grpo_family(records: Sequence[SampleRecord]) -> dict[str, float | None]:
    """``grpo/frac_zero_std``, ``grpo/reward_std`` and ``grpo/adv_abs_mean`` of some records.

    Undefined (None) without groups, or without advantages for the last one.
    """
    stats = [group_stats(rewards) for rewards in reward_groups(records).values()]
    return {
        "grpo/frac_zero_std": ratio(sum(s.zero_std for s in stats), len(stats)),
        "grpo/reward_std": mean(s.std for s in stats),
        "grpo/adv_abs_mean": mean(abs(r.advantage) for r in records if r.advantage is not None),
    }


def grpo_metrics(records: Sequence[SampleRecord]) -> Metrics:
    """:func:`grpo_family` per data source and over the whole step (source None)."""
    out: dict[MetricKey, SupportsFloat | None] = {}
    for source, group in by_source(records).items():
        for key, value in grpo_family(group).items():
            out[(source, key)] = value
    return finalize(out)


def dynamic_sampling_metrics(refilled: Mapping[str, int], dropped: Mapping[str, int]) -> Metrics:
    """``grpo/groups_refilled`` and ``grpo/groups_dropped`` per source named in either, and their sums.

    >>> dynamic_sampling_metrics({"a": 2}, {})[(None, "grpo/groups_refilled")]
    2.0
    """
    out: dict[MetricKey, SupportsFloat | None] = {}
    for source in [*refilled, *(s for s in dropped if s not in refilled)]:
        out[(source, "grpo/groups_refilled")] = refilled.get(source, 0)
        out[(source, "grpo/groups_dropped")] = dropped.get(source, 0)
    out[(None, "grpo/groups_refilled")] = sum(refilled.values())
    out[(None, "grpo/groups_dropped")] = sum(dropped.values())
    return finalize(out)


@dataclass(frozen=True, slots=True)
class LengthBaseline:
    """Responses and their tokens over the first ``steps`` steps a source was drawn in."""

    responses: int = 0
    tokens: int = 0
    steps: int = 0

    @property
    def mean(self) -> float | None:
        return self.tokens / self.responses if self.responses else None


LengthBaselines = dict[str | None, LengthBaseline]  # per source; None = every response of the step


def update_length_baselines(
    baselines: Mapping[str | None, LengthBaseline],
    records: Sequence[SampleRecord],
    *,
    steps: int = DRIFT_BASELINE_STEPS,
) -> LengthBaselines:
    """The baselines after a step: each source in ``records`` (and None) adds its responses while
    it has been seen in fewer than ``steps`` steps; after that its baseline stays fixed.
    """
    out = dict(baselines)
    for source, group in by_source(records).items():
        old = out.get(source, LengthBaseline())
        if old.steps < steps:
            out[source] = LengthBaseline(
                old.responses + len(group), old.tokens + sum(r.response_length for r in group), old.steps + 1
            )
    return out


def length_drift_metrics(
    records: Sequence[SampleRecord], baselines: Mapping[str | None, LengthBaseline]
) -> Metrics:
    """``response_length/drift``: this step's mean length minus the baseline's, per source and overall.

    ``baselines`` must already count this step (:func:`update_length_baselines`), so a source's
    drift is 0 on its first step; a source without a baseline gets none.
    """
    out: dict[MetricKey, SupportsFloat | None] = {}
    for source, group in by_source(records).items():
        baseline = baselines.get(source)
        now = mean(r.response_length for r in group)
        if baseline is not None and baseline.mean is not None and now is not None:
            out[(source, "response_length/drift")] = now - baseline.mean
    return finalize(out)


def baselines_state(baselines: Mapping[str | None, LengthBaseline]) -> list[list[object]]:
    """``[[source or None, responses, tokens, steps], ...]``: what a checkpoint saves."""
    return [[source, b.responses, b.tokens, b.steps] for source, b in baselines.items()]


def baselines_from_state(state: Iterable[Sequence[Any]]) -> LengthBaselines:
    """The inverse of :func:`baselines_state`."""
    out: LengthBaselines = {}
    for source, responses, tokens, steps in state:
        if source is not None and not isinstance(source, str):
            raise ValueError(f"a length baseline's source must be a string or None, got {source!r}")
        out[source] = LengthBaseline(int(responses), int(tokens), int(steps))
    return out

"""How one policy update is split over data-parallel workers, and how their results combine.

A worker holds a share of the rollout batch (:class:`Shard`). Every worker walks the same
global mini-batches (the shuffle is seeded and counts the whole batch), runs its own members
of each, and the gradients are summed over the workers before the optimizer step, so that
the step equals the single-process one: the loss of each micro-batch is weighted by its
tokens over the *whole* mini-batch's tokens (a token-mean over every worker's responses).

Metrics come back as sums (:class:`UpdateTotals`) and are combined by :func:`merge_totals`:
token-weighted sums and token counts add up over workers, never means of means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch


class Collective(Protocol):
    """The collective operations an update needs from the group of workers."""

    def sum_gradients(self, params: Sequence[torch.nn.Parameter]) -> None:
        """Make every ``param.grad`` the sum of the workers' gradients (no-op when sharding reduces them)."""
        ...

    def all_true(self, flag: bool) -> bool:
        """Whether ``flag`` holds on every worker."""
        ...

    def sum_floats(self, values: Sequence[float]) -> list[float]:
        """Element-wise sums of ``values`` over the workers."""
        ...

    @property
    def lockstep(self) -> bool:
        """True when every worker must run the same number of forward/backward passes (FSDP)."""
        ...

    @property
    def loss_scale(self) -> float:
        """Factor on each worker's loss that makes the group's gradient reduction a sum."""
        ...

    @property
    def owns_step(self) -> bool:
        """True when the sharding keeps the gradients and applies the step itself (DeepSpeed)."""
        ...

    def owned_step(self, finite: bool) -> float | None:
        """That step, on every worker: the gradient norm before clipping; None when it was skipped.

        ``finite`` False (a non-finite loss on some worker) skips it.
        """
        ...


@dataclass(frozen=True)
class Shard:
    """This worker's part of a data-parallel update.

    ``lengths[g]`` is the response length of global rollout ``g`` and ``owner[g]`` the rank of
    the worker holding it; the worker's local rollouts are its owned ones in global order.
    """

    rank: int
    world: int
    lengths: tuple[int, ...]
    owner: tuple[int, ...]
    collective: Collective

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank must be in [0, {self.world}), got {self.rank}")
        if len(self.lengths) != len(self.owner):
            raise ValueError(f"lengths and owner differ in size: {len(self.lengths)} vs {len(self.owner)}")
        if any(not 0 <= o < self.world for o in self.owner):
            raise ValueError(f"every owner must be a rank in [0, {self.world})")

    def local_index(self) -> dict[int, int]:
        """Global rollout index → position among this worker's rollouts."""
        mine = [g for g, o in enumerate(self.owner) if o == self.rank]
        return {g: position for position, g in enumerate(mine)}

    def count_of(self, indices: Sequence[int], rank: int) -> int:
        """How many of the global ``indices`` worker ``rank`` holds."""
        return sum(1 for g in indices if self.owner[g] == rank)


def assign_owners(lengths: Sequence[int], world: int) -> list[int]:
    """A worker for each rollout: contiguous runs of near-equal token totals, every worker one at least.

    Contiguous, so that the responses of a prompt stay together where possible; balanced by
    tokens (the cost of the forward/backward), not by count.

    >>> assign_owners([10, 10, 10, 10], 2)
    [0, 0, 1, 1]
    >>> assign_owners([30, 5, 5, 5, 5], 2)
    [0, 1, 1, 1, 1]
    """
    if world < 1:
        raise ValueError(f"world must be >= 1, got {world}")
    if len(lengths) < world:
        raise ValueError(f"{len(lengths)} rollouts cannot be split over {world} workers (one each at least)")
    total = float(sum(lengths))
    owners: list[int] = []
    rank, running = 0, 0.0
    for index, length in enumerate(lengths):
        if rank < world - 1 and owners and owners[-1] == rank:
            later_ranks = world - 1 - rank  # each needs one of the rollouts left, this one included
            if running >= total * (rank + 1) / world or len(lengths) - index == later_ranks:
                rank += 1
        owners.append(rank)
        running += length
    return owners


@dataclass
class UpdateTotals:
    """The sums one worker's update produced; :func:`merge_totals` combines workers."""

    sums: dict[str, float] = field(default_factory=dict)  # token-weighted metric sums
    tokens: float = 0.0  # response tokens the sums are weighted by
    step_sums: dict[str, float] = field(default_factory=dict)  # per-optimizer-step sums, equal on all workers
    steps: int = 0
    skipped: int = 0
    lr: float = 0.0

    def metrics(self) -> dict[str, float]:
        """The update's metrics (see :func:`trainer.algo.update.update_policy`)."""
        out = {key: value / self.tokens for key, value in self.sums.items() if self.tokens > 0}
        out |= {key: value / self.steps for key, value in self.step_sums.items() if self.steps > 0}
        out["actor/lr"] = self.lr
        out["actor/optimizer_steps"] = float(self.steps)
        out["actor/skipped_steps"] = float(self.skipped)
        return out


def merge_totals(parts: Sequence[UpdateTotals]) -> UpdateTotals:
    """One update's totals from its workers': token sums add up; step figures are the first worker's.

    The step figures (gradient norms after the sum over workers, steps taken, LR) are the same
    on every worker, so any one of them is the group's.
    """
    if not parts:
        raise ValueError("no totals to merge")
    sums: dict[str, float] = {}
    for part in parts:
        for key, value in part.sums.items():
            sums[key] = sums.get(key, 0.0) + value
    first = parts[0]
    return UpdateTotals(
        sums=sums,
        tokens=sum(part.tokens for part in parts),
        step_sums=dict(first.step_sums),
        steps=first.steps,
        skipped=first.skipped,
        lr=first.lr,
    )

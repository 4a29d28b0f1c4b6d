"""Splitting a step's prompts over the workers, and the sampling seed of each worker (pure)."""

from __future__ import annotations

from trainer.engine.state import step_seed


def split_evenly(count: int, world: int) -> list[tuple[int, int]]:
    """``[start, end)`` of each worker's contiguous share of ``count`` items; sizes differ by one at most.

    >>> split_evenly(5, 2)
    [(0, 3), (3, 5)]
    >>> split_evenly(1, 3)
    [(0, 1), (1, 1), (1, 1)]
    """
    if world < 1:
        raise ValueError(f"world must be >= 1, got {world}")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    base, extra = divmod(count, world)
    bounds, start = [], 0
    for rank in range(world):
        end = start + base + (1 if rank < extra else 0)
        bounds.append((start, end))
        start = end
    return bounds


def worker_seed(seed: int | None, rank: int) -> int | None:
    """The sampling seed of worker ``rank`` for a call seeded ``seed``: rank 0 keeps it.

    >>> worker_seed(7, 0), worker_seed(None, 1)
    (7, None)
    >>> worker_seed(7, 1) != worker_seed(7, 2)
    True
    """
    if seed is None or rank == 0:
        return seed
    return step_seed(seed, rank, "worker")

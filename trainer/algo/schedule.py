"""Learning-rate schedule: linear warm-up, then constant (V-Triune: 5 % warm-up, constant LR)."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


def warmup_steps(total_steps: int, warmup_ratio: float) -> int:
    """Number of warm-up steps: ceil(warmup_ratio · total_steps).

    >>> warmup_steps(100, 0.05), warmup_steps(10, 0.05), warmup_steps(10, 0.0)
    (5, 1, 0)
    """
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"warmup_ratio must be in [0, 1], got {warmup_ratio}")
    return math.ceil(warmup_ratio * total_steps)


def warmup_constant_factor(step: int, warmup: int) -> float:
    """LR multiplier at training step ``step`` (0-based): (step + 1) / warmup during warm-up, then 1.

    The first step already moves (1 / warmup of the LR) rather than taking a
    zero-LR step, and step ``warmup − 1`` reaches the full rate.

    >>> [warmup_constant_factor(s, 4) for s in range(6)]
    [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    """
    if warmup <= 0 or step >= warmup:
        return 1.0
    return (step + 1) / warmup


def warmup_constant_schedule(optimizer: Optimizer, total_steps: int, warmup_ratio: float = 0.05) -> LambdaLR:
    """A ``LambdaLR``: linear warm-up over ``warmup_ratio`` of the steps, then constant.

    Step it once per training step (one rollout batch, whatever the number of
    mini-batch updates inside it), as verl does, so ``total_steps`` counts training
    steps. Each parameter group keeps its own base LR (per-module rates).
    """
    warmup = warmup_steps(total_steps, warmup_ratio)
    return LambdaLR(optimizer, lambda step: warmup_constant_factor(step, warmup))

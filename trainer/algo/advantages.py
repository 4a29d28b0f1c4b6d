"""GRPO's group-relative advantage (Shao et al., DeepSeekMath, arXiv 2402.03300, §4.1.2)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

EPS = 1e-6


def _group_index(
    size: int, group_ids: torch.Tensor | Sequence[int] | None, group_size: int | None
) -> torch.Tensor:
    if (group_ids is None) == (group_size is None):
        raise ValueError("pass exactly one of group_ids and group_size")
    if group_size is not None:
        if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
            raise ValueError(f"group_size must be a positive int, got {group_size!r}")
        if size % group_size:
            raise ValueError(f"{size} rewards cannot be split into groups of {group_size}")
        return torch.arange(size) // group_size
    ids = torch.as_tensor(group_ids)
    if ids.dim() != 1 or ids.shape[0] != size:
        raise ValueError(f"group_ids must have shape ({size},), got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"group_ids must be integers, got {ids.dtype}")
    return torch.unique(ids, return_inverse=True)[1]


def group_advantages(
    rewards: torch.Tensor,
    group_ids: torch.Tensor | Sequence[int] | None = None,
    group_size: int | None = None,
    *,
    eps: float = EPS,
    unbiased: bool = True,
) -> torch.Tensor:
    """Outcome advantage of each response relative to the other responses to its prompt.

    For response i of group g with rewards r_g = {r_j : j ∈ g}::

        A_i = (r_i − mean(r_g)) / (std(r_g) + eps)

    ``std`` is the unbiased (Bessel-corrected, n − 1) standard deviation by
    default, as ``torch.std`` and verl compute it; ``unbiased=False`` divides by n.
    A group whose rewards are all equal (including a group of one) carries no
    learning signal and gets exactly 0.

    Shapes: ``rewards`` (N,) with N = B·G; ``group_ids`` (N,) integers (any
    labels, in any order), or ``group_size`` G for consecutive groups. Returns (N,)
    float32.

    >>> [round(a, 4) for a in group_advantages(torch.tensor([1.0, 0.0, 5.0, 5.0]), group_size=2).tolist()]
    [0.7071, -0.7071, 0.0, 0.0]
    """
    if not isinstance(rewards, torch.Tensor):
        raise TypeError(f"rewards must be a torch.Tensor, got {type(rewards).__name__}")
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if rewards.shape[0] == 0:
        raise ValueError("rewards is empty")
    values = rewards.detach().to(torch.float64)
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"rewards must be finite; NaN or Inf at index {bad[:10]}")
    index = _group_index(values.shape[0], group_ids, group_size).to(values.device)
    groups = int(index.max()) + 1
    count = torch.zeros(groups, dtype=values.dtype, device=values.device).index_add_(
        0, index, torch.ones_like(values)
    )
    mean = torch.zeros_like(count).index_add_(0, index, values) / count
    centred = values - mean[index]
    squares = torch.zeros_like(count).index_add_(0, index, centred.square())
    denominator = (count - 1.0).clamp(min=1.0) if unbiased else count
    std = (squares / denominator).sqrt()
    highest = torch.full_like(count, -torch.inf).scatter_reduce(0, index, values, reduce="amax")
    lowest = torch.full_like(count, torch.inf).scatter_reduce(0, index, values, reduce="amin")
    constant = (highest == lowest)[index]
    advantages = centred / (std[index] + eps)
    return torch.where(constant, torch.zeros_like(advantages), advantages).to(torch.float32)


def zero_std_groups(rewards: Sequence[float], group_ids: Sequence[int]) -> list[int]:
    """The group ids whose rewards are all equal, in order of first occurrence.

    Such a group has advantage 0 for every response (:func:`group_advantages`), so it adds no
    gradient; DAPO's dynamic sampling (arXiv 2503.14476, §3.2) filters it out and samples again.

    >>> zero_std_groups([1.0, 0.0, 0.5, 0.5, 1.0], [0, 0, 1, 1, 2])
    [1, 2]
    """
    if len(rewards) != len(group_ids):
        raise ValueError(f"{len(rewards)} rewards but {len(group_ids)} group ids")
    low: dict[int, float] = {}
    high: dict[int, float] = {}
    for reward, group in zip(rewards, group_ids, strict=True):
        value = float(reward)
        low[group] = min(low.get(group, value), value)
        high[group] = max(high.get(group, value), value)
    return [group for group in low if low[group] == high[group]]

"""Padding removal: a collated batch's real tokens packed into one row (``algo.remove_padding``).

A micro-batch collated by :func:`trainer.rollout.collate` is as wide as its longest prompt
plus its longest response, and every pad token goes through every layer. Packed, the rows'
real tokens are laid end to end in one row of ``T = Σ lengths`` tokens and nothing is
computed for padding (verl's ``use_remove_padding``).

The model tells the sequences apart by their positions: the ``position_ids`` passed are
``(4, 1, T)``, the first row a text position that restarts at 0 with each sequence, the
other three the M-RoPE positions (temporal, height, width) each token had in the padded
batch. From the restarts transformers builds a block-diagonal causal mask for the ``sdpa``
and ``eager`` attentions, and cumulative sequence lengths (varlen kernels, no masked-out
work) for ``flash_attention_2``. The images keep their order, since rows are packed in
order, so ``pixel_values`` and ``image_grid_thw`` are passed as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PackedBatch:
    """The forward's inputs packed into one row, and where each padded position went."""

    inputs: dict[str, torch.Tensor]  # input_ids, mm_token_type_ids (1, T), position_ids (4, 1, T), images
    flat_index: torch.Tensor  # (B, L) long: the packed column of each padded position, -1 on padding


def mrope_positions(model: nn.Module, batch: Mapping[str, torch.Tensor], text: torch.Tensor) -> torch.Tensor:
    """(3, B, L) M-RoPE positions of a padded batch, as the model computes them for its forward.

    With images, the model's own ``get_rope_index``; text only, ``text`` (each row's real tokens
    counted 0, 1, 2, …) on all three axes, since a text token's three M-RoPE positions are equal.
    """
    if "image_grid_thw" in batch:
        inner = getattr(model, "model", model)
        positions, _ = inner.get_rope_index(
            batch["input_ids"],
            mm_token_type_ids=batch["mm_token_type_ids"],
            image_grid_thw=batch["image_grid_thw"],
            attention_mask=batch["attention_mask"],
        )
        return positions
    return text.unsqueeze(0).expand(3, -1, -1)


def pack_batch(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> PackedBatch:
    """``batch`` (the layout of :func:`trainer.rollout.collate`) with its padding removed.

    >>> from types import SimpleNamespace
    >>> batch = {
    ...     "input_ids": torch.tensor([[0, 5, 6, 7], [8, 9, 10, 0]]),
    ...     "attention_mask": torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]]),
    ...     "mm_token_type_ids": torch.zeros(2, 4, dtype=torch.long),
    ... }
    >>> packed = pack_batch(SimpleNamespace(), batch)
    >>> packed.inputs["input_ids"].tolist()
    [[5, 6, 7, 8, 9, 10]]
    >>> packed.inputs["position_ids"][0].tolist()
    [[0, 1, 2, 0, 1, 2]]
    >>> packed.flat_index.tolist()
    [[-1, 0, 1, 2], [3, 4, 5, -1]]
    """
    mask = batch["attention_mask"]
    if mask.dim() != 2 or mask.shape != batch["input_ids"].shape:
        raise ValueError(f"attention_mask must be (B, L) like input_ids, got shape {tuple(mask.shape)}")
    real = mask.bool()
    total = int(real.sum())
    if total == 0:
        raise ValueError("the batch has no real tokens to pack")
    text = mask.long().cumsum(-1) - 1  # only its values at real tokens are used
    positions = torch.cat([text.unsqueeze(0), mrope_positions(model, batch, text)], dim=0)  # (4, B, L)
    inputs = {
        "input_ids": batch["input_ids"][real].unsqueeze(0),
        "mm_token_type_ids": batch["mm_token_type_ids"][real].unsqueeze(0),
        "position_ids": positions[:, real].unsqueeze(1),
    }
    for key in ("pixel_values", "image_grid_thw"):
        if key in batch:
            inputs[key] = batch[key]
    flat_index = torch.full(mask.shape, -1, dtype=torch.long, device=mask.device)
    flat_index[real] = torch.arange(total, device=mask.device)
    return PackedBatch(inputs=inputs, flat_index=flat_index)

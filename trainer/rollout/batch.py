"""Pad rollouts into one batch for the log-prob forward.

Layout of each row: the prompt left-padded to the longest prompt ``P``, then the
response right-padded to the longest response ``R``::

    [pad pad p p p p | r r r r pad pad]
     <----- P -----> | <----- R ----->

So every response starts at column ``P`` and the logits that predict it are the
hidden states at columns ``P - 1 .. P + R - 2`` — one slice for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from trainer.rollout.types import Rollout


@dataclass(frozen=True)
class RolloutBatch:
    """Padded prompt + response tensors of several rollouts."""

    input_ids: torch.Tensor  # (B, P + R) long
    attention_mask: torch.Tensor  # (B, P + R) long: 1 on real tokens
    mm_token_type_ids: torch.Tensor  # (B, P + R) long: 0 text, 1 image, 2 video
    pixel_values: torch.Tensor | None  # (num_patches, D) of every image, row order
    image_grid_thw: torch.Tensor | None  # (num_images, 3)
    response_ids: torch.Tensor  # (B, R) long, padded with the pad id
    response_mask: torch.Tensor  # (B, R) float: 1.0 on response tokens

    @property
    def prompt_width(self) -> int:
        return int(self.input_ids.shape[1] - self.response_ids.shape[1])

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Keyword arguments of the model's forward."""
        inputs = {
            "input_ids": self.input_ids,
            "attention_mask": self.attention_mask,
            "mm_token_type_ids": self.mm_token_type_ids,
        }
        if self.pixel_values is not None and self.image_grid_thw is not None:
            inputs["pixel_values"] = self.pixel_values
            inputs["image_grid_thw"] = self.image_grid_thw
        return inputs

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> RolloutBatch:
        """A copy on ``device``; ``dtype`` (the model's) applies to ``pixel_values`` only."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        pixels = move(self.pixel_values)
        if pixels is not None and dtype is not None:
            pixels = pixels.to(dtype)
        return RolloutBatch(
            input_ids=self.input_ids.to(device),
            attention_mask=self.attention_mask.to(device),
            mm_token_type_ids=self.mm_token_type_ids.to(device),
            pixel_values=pixels,
            image_grid_thw=move(self.image_grid_thw),
            response_ids=self.response_ids.to(device),
            response_mask=self.response_mask.to(device),
        )


def collate(rollouts: Sequence[Rollout], *, pad_token_id: int) -> RolloutBatch:
    """Pad ``rollouts`` into a :class:`RolloutBatch` (layout in the module docstring)."""
    if len(rollouts) == 0:
        raise ValueError("cannot collate an empty list of rollouts")
    for index, rollout in enumerate(rollouts):
        if rollout.response_length == 0:
            raise ValueError(f"rollout {index} has an empty response")
    size = len(rollouts)
    prompt_width = max(r.prompt.length for r in rollouts)
    response_width = max(r.response_length for r in rollouts)
    width = prompt_width + response_width
    input_ids = torch.full((size, width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((size, width), dtype=torch.long)
    mm_types = torch.zeros((size, width), dtype=torch.long)
    response_mask = torch.zeros((size, response_width), dtype=torch.float32)
    for row, rollout in enumerate(rollouts):
        p, r = rollout.prompt.length, rollout.response_length
        input_ids[row, prompt_width - p : prompt_width] = rollout.prompt.input_ids
        input_ids[row, prompt_width : prompt_width + r] = rollout.response_ids
        attention_mask[row, prompt_width - p : prompt_width + r] = 1
        mm_types[row, prompt_width - p : prompt_width] = rollout.prompt.mm_token_type_ids
        response_mask[row, :r] = 1.0
    pixels = [r.prompt.pixel_values for r in rollouts if r.prompt.pixel_values is not None]
    grids = [r.prompt.image_grid_thw for r in rollouts if r.prompt.image_grid_thw is not None]
    return RolloutBatch(
        input_ids=input_ids,
        attention_mask=attention_mask,
        mm_token_type_ids=mm_types,
        pixel_values=torch.cat(pixels) if pixels else None,
        image_grid_thw=torch.cat(grids) if grids else None,
        response_ids=input_ids[:, prompt_width:].clone(),
        response_mask=response_mask,
    )

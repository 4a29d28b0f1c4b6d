"""What goes into a rollout engine and what comes out of it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image


@dataclass(frozen=True)
class RolloutPrompt:
    """One prompt: chat messages and the images they refer to, in order.

    ``messages`` is a list of ``{"role", "content"}``. A content is either a string
    where ``<image>`` marks where an image goes (the dataset layout), or a list of
    ``{"type": "image"}`` / ``{"type": "text", "text": ...}`` items (the chat
    template layout). The number of image markers must equal ``len(images)``.
    """

    messages: list[dict[str, Any]]
    images: list[Image.Image] = field(default_factory=list)


@dataclass(frozen=True)
class PromptInputs:
    """The processor's output for one prompt, unpadded. Shared by the n rollouts of the prompt."""

    input_ids: torch.Tensor  # (P,) long: chat-templated prompt with image pads expanded
    mm_token_type_ids: torch.Tensor  # (P,) long: 0 text, 1 image, 2 video (M-RoPE needs it)
    pixel_values: torch.Tensor | None  # (num_patches, C * temporal_patch * patch * patch) or None
    image_grid_thw: torch.Tensor | None  # (num_images, 3) long: patches along (t, h, w) or None
    image_sizes: tuple[tuple[int, int], ...]  # (width, height) of each image after the processor's resize

    @property
    def length(self) -> int:
        return int(self.input_ids.shape[0])


@dataclass(frozen=True)
class Rollout:
    """One generated response and everything needed to recompute its log-probs.

    ``response_ids`` ends with the EOS token (``<|im_end|>``) unless the response
    was cut at ``max_new_tokens`` (``clipped``); vision placeholder tokens have
    already been replaced by a plain token. ``logprobs`` are the engine's own
    per-token log-probs when it was asked to record them (diagnostics only: the
    update recomputes them with the policy).
    """

    prompt_index: int  # index of the prompt in the generate() call; the GRPO group id
    prompt: PromptInputs
    response_ids: torch.Tensor  # (R,) long
    response_text: str  # decoded response without special tokens
    clipped: bool  # hit max_new_tokens without an EOS
    logprobs: torch.Tensor | None = None  # (R,) float32 or None

    @property
    def response_length(self) -> int:
        return int(self.response_ids.shape[0])

    @property
    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the first image as the model saw it, for reward normalisation."""
        return self.prompt.image_sizes[0] if self.prompt.image_sizes else None

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """Unpadded prompt + response inputs of a batch of one (tensors of shape (1, P + R))."""
        input_ids = torch.cat([self.prompt.input_ids, self.response_ids])
        mm_types = torch.cat([self.prompt.mm_token_type_ids, torch.zeros_like(self.response_ids)])
        inputs = {
            "input_ids": input_ids[None],
            "attention_mask": torch.ones_like(input_ids)[None],
            "mm_token_type_ids": mm_types[None],
        }
        if self.prompt.pixel_values is not None:
            inputs["pixel_values"] = self.prompt.pixel_values
            inputs["image_grid_thw"] = self.prompt.image_grid_thw
        return inputs

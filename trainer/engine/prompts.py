"""From sample rows to rollout prompts: prompt-pool augmentation and image resizing.

A :class:`PromptItem` keeps what scoring and the monitor need next to the prompt the model
sees: the source, the (augmented) row and its verifier.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from trainer.data.images import prepare_image
from trainer.data.prompt_pool import PromptPool, augment_prompt
from trainer.rollout import RolloutPrompt


@dataclass(frozen=True)
class PromptItem:
    """One prompt of a step with its provenance."""

    source: str  # mixture source name, the ``source`` of every metric of its responses
    row: Mapping[str, Any]  # the sample row after prompt-pool augmentation
    prompt: RolloutPrompt  # messages + resized images, what the rollout backend takes

    @property
    def reward_model(self) -> Mapping[str, Any]:
        return self.row["reward_model"]

    @property
    def verifier(self) -> str:
        name = self.reward_model.get("verifier")
        return name if isinstance(name, str) else ""


def rollout_prompt(row: Mapping[str, Any], *, min_pixels: int, max_pixels: int) -> RolloutPrompt:
    """Decode every image of ``row`` and resize it onto the 28-pixel grid inside [min_pixels, max_pixels].

    Raises :class:`trainer.data.images.ImageError` for an image that cannot be used.
    """
    images = []
    for image in row.get("images") or []:
        data = image.get("bytes") if isinstance(image, Mapping) else None
        if data is None:
            raise ValueError(f"image {image!r:.80} has no bytes (a JSONL path needs data.sources[].images)")
        images.append(prepare_image(data, min_pixels=min_pixels, max_pixels=max_pixels).image)
    messages = [{"role": m["role"], "content": m["content"]} for m in row["prompt"]]
    return RolloutPrompt(messages=messages, images=images)


def prepare_item(
    source: str,
    row: Mapping[str, Any],
    *,
    key: object,
    pool: PromptPool | None,
    min_pixels: int,
    max_pixels: int,
) -> PromptItem:
    """Augment ``row`` (mathverify rows, when ``pool`` is on) keyed by ``key``, then build its prompt.

    Keying by the draw number makes a resumed run write the same prompts as an uninterrupted one.
    """
    augmented = pool.augment(row, key=key) if pool is not None else dict(row)
    prompt = rollout_prompt(augmented, min_pixels=min_pixels, max_pixels=max_pixels)
    return PromptItem(source=source, row=augmented, prompt=prompt)


class _LongestChoice(random.Random):
    """A "random" generator whose ``choice`` is the longest option, measured by ``length``."""

    def __init__(self, length: Callable[[str], int]) -> None:
        super().__init__(0)
        self._length = length

    def choice(self, seq: Sequence[Any]) -> Any:
        return max(seq, key=self._length)


def longest_augmentation(row: Mapping[str, Any], length: Callable[[str], int]) -> dict[str, Any]:
    """``row`` augmented with the longest sentence of each prompt-pool list (by ``length``, e.g. tokens).

    The pre-flight length check measures this worst case, so no draw of the pool can make a
    prompt that passed the check too long.
    """
    return augment_prompt(row, _LongestChoice(length))

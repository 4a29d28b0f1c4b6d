"""Turn a :class:`RolloutPrompt` into model inputs, and clean generated responses.

Datasets mark images with ``<image>`` inside a string content; chat templates
want a list of typed items. :func:`to_chat_items` converts the first into the
second, :func:`encode_prompt` runs the processor on one prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase
from transformers.processing_utils import ProcessorMixin

from trainer.models.tokenizer import VISION_TOKENS
from trainer.rollout.types import PromptInputs, RolloutPrompt

IMAGE_MARKER = "<image>"


def to_chat_items(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Split ``<image>`` markers of string contents into ``{"type": "image"}`` items.

    >>> to_chat_items([{"role": "user", "content": "<image>How many?"}])
    [{'role': 'user', 'content': [{'type': 'image'}, {'type': 'text', 'text': 'How many?'}]}]
    """
    converted: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message or "content" not in message:
            raise ValueError(f"message {index} must be a dict with 'role' and 'content', got {message!r}")
        content = message["content"]
        if isinstance(content, str):
            items: list[dict[str, Any]] = []
            for position, part in enumerate(content.split(IMAGE_MARKER)):
                if position > 0:
                    items.append({"type": "image"})
                if part:
                    items.append({"type": "text", "text": part})
            converted.append({"role": message["role"], "content": items})
        elif isinstance(content, list):
            converted.append({"role": message["role"], "content": list(content)})
        else:
            raise ValueError(
                f"message {index} content must be a string or a list, got {type(content).__name__}"
            )
    return converted


def count_images(messages: Sequence[dict[str, Any]]) -> int:
    """Number of image items in already converted messages."""
    return sum(
        1 for m in messages for item in m["content"] if isinstance(item, dict) and item.get("type") == "image"
    )


def chat_text(processor: ProcessorMixin, prompt: RolloutPrompt) -> str:
    """The chat-templated text of one prompt, one image pad per image, the assistant turn opened."""
    if not isinstance(prompt, RolloutPrompt):
        raise TypeError(f"expected a RolloutPrompt, got {type(prompt).__name__}")
    messages = to_chat_items(prompt.messages)
    if not messages:
        raise ValueError("prompt has no messages")
    markers = count_images(messages)
    if markers != len(prompt.images):
        raise ValueError(f"prompt has {markers} image marker(s) but {len(prompt.images)} image(s)")
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode_prompt(processor: ProcessorMixin, prompt: RolloutPrompt) -> PromptInputs:
    """Chat-template and process one prompt (no padding)."""
    text = chat_text(processor, prompt)
    kwargs: dict[str, Any] = {"text": [text], "return_tensors": "pt"}
    if prompt.images:
        kwargs["images"] = [list(prompt.images)]
    encoded = processor(**kwargs)
    grid = encoded.get("image_grid_thw")
    patch = int(processor.image_processor.patch_size)
    sizes = tuple((int(w) * patch, int(h) * patch) for _, h, w in grid.tolist()) if grid is not None else ()
    input_ids = encoded["input_ids"][0]
    mm_types = encoded.get("mm_token_type_ids")
    return PromptInputs(
        input_ids=input_ids,
        mm_token_type_ids=mm_types[0] if mm_types is not None else torch.zeros_like(input_ids),
        pixel_values=encoded.get("pixel_values"),
        image_grid_thw=grid,
        image_sizes=sizes,
    )


def vision_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Ids of the vision tokens (start, end, image pad, video pad) that the tokenizer knows.

    None of them may appear in a response: an image or video pad makes the
    log-prob forward look for image features that do not exist ("Image features
    and image tokens do not match"); the delimiters would open a vision span. An
    untrained model samples them.
    """
    ids = []
    unk = tokenizer.unk_token_id
    for token in VISION_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != unk:
            ids.append(token_id)
    return ids


def plain_token_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The token that replaces a vision token in a response: a single space."""
    ids = tokenizer.encode(" ", add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"a single space should be one token, got ids {ids}")
    return int(ids[0])


def replace_tokens(ids: torch.Tensor, forbidden: Sequence[int], replacement: int) -> torch.Tensor:
    """A copy of ``ids`` (any shape) with every id in ``forbidden`` replaced by ``replacement``.

    >>> replace_tokens(torch.tensor([7, 5, 9, 6]), [5, 6], 1).tolist()
    [7, 1, 9, 1]
    """
    if not forbidden:
        return ids.clone()
    mask = torch.isin(ids, torch.tensor(list(forbidden), dtype=ids.dtype, device=ids.device))
    return ids.masked_fill(mask, replacement)

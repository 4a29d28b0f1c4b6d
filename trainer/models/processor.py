"""The Qwen2-VL / Qwen2.5-VL / Qwen3-VL processor, built without a video processor.

The processor's default constructor wants a video processor, and the video
processor (like the default image processor backend) imports torchvision, which
is not importable on every machine this runs on. Images only are needed for
RL, so the processor is assembled by hand: the PIL-backed Qwen2-VL image
processor (patch 14, merge 2, temporal patch 2) + the tokenizer + no video
processor.
"""

from __future__ import annotations

from typing import Literal

from transformers import PreTrainedTokenizerBase, Qwen2_5_VLProcessor, Qwen2VLProcessor, Qwen3VLProcessor
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    """Qwen2-VL processor whose sub-processors are the image processor and the tokenizer only.

    ``ProcessorMixin`` derives the sub-processors from the ``__init__`` signature and
    checks each against its base class; for ``video_processor`` that check imports
    the video stack (torchvision) even when the value is None. Leaving the
    parameter out of the signature skips it.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL processor without a video processor (see :class:`Qwen2VLImageOnlyProcessor`)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen3VLImageOnlyProcessor(Qwen3VLProcessor):
    """Qwen3-VL processor without a video processor (see :class:`Qwen2VLImageOnlyProcessor`)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


PROCESSORS: dict[str, type[ProcessorMixin]] = {
    "qwen2_vl": Qwen2VLImageOnlyProcessor,
    "qwen2_5_vl": Qwen2_5_VLImageOnlyProcessor,
    "qwen3_vl": Qwen3VLImageOnlyProcessor,
}

# Qwen2-VL's own defaults: 56x56 .. 28*28*1280 pixels.
DEFAULT_MIN_PIXELS = 56 * 56
DEFAULT_MAX_PIXELS = 28 * 28 * 1280

PATCH_SIZE = 14


def build_image_processor(
    *, min_pixels: int = DEFAULT_MIN_PIXELS, max_pixels: int = DEFAULT_MAX_PIXELS, **overrides: object
) -> Qwen2VLImageProcessorPil:
    """The PIL Qwen2-VL image processor resizing each image into [min_pixels, max_pixels]."""
    if not 0 < min_pixels <= max_pixels:
        raise ValueError(
            f"need 0 < min_pixels <= max_pixels, got min_pixels={min_pixels}, max_pixels={max_pixels}"
        )
    return Qwen2VLImageProcessorPil(min_pixels=min_pixels, max_pixels=max_pixels, **overrides)


def build_processor(
    tokenizer: PreTrainedTokenizerBase,
    arch: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"],
    *,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chat_template: str | None = None,
    image_processor_overrides: dict[str, object] | None = None,
) -> ProcessorMixin:
    """Assemble the processor of ``arch`` from ``tokenizer`` with no video processor."""
    if arch not in PROCESSORS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(PROCESSORS))}")
    image_processor = build_image_processor(
        min_pixels=min_pixels, max_pixels=max_pixels, **(image_processor_overrides or {})
    )
    template = chat_template if chat_template is not None else tokenizer.chat_template
    return PROCESSORS[arch](image_processor=image_processor, tokenizer=tokenizer, chat_template=template)

"""Load any Hugging Face Qwen2-VL / Qwen2.5-VL checkpoint directory, offline.

The model comes from ``from_pretrained``; the processor is assembled from the
checkpoint's tokenizer, its ``preprocessor_config.json`` read by the PIL image
processor, and its chat template, with no video processor (see
:mod:`trainer.models.processor`). The hub is never contacted:
``HF_HUB_OFFLINE=1`` is set for the duration of the load and only local files
are read.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, cast

import torch
from transformers import (
    AutoConfig,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLForConditionalGeneration,
    Qwen3VLForConditionalGeneration,
)
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
from transformers.processing_utils import ProcessorMixin

from trainer.models.processor import PROCESSORS

MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_vl": Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


@contextlib.contextmanager
def _offline() -> Iterator[None]:
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous


def _chat_template(path: Path, tokenizer: PreTrainedTokenizerBase) -> str | None:
    """The checkpoint's chat template: the tokenizer's, else chat_template.jinja / .json (hub layout)."""
    if tokenizer.chat_template:
        return cast(str, tokenizer.chat_template)
    jinja = path / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    as_json = path / "chat_template.json"
    if as_json.is_file():
        return cast(str, json.loads(as_json.read_text(encoding="utf-8"))["chat_template"])
    return None


def load_processor(
    path: str | Path,
    arch: Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"],
    *,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> ProcessorMixin:
    """The checkpoint's processor without a video processor; ``min/max_pixels`` override its resize range."""
    path = Path(path)
    with _offline():
        tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        overrides = {
            k: v for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None
        }
        image_processor = Qwen2VLImageProcessorPil.from_pretrained(
            str(path), local_files_only=True, **overrides
        )
    tokenizer.padding_side = "left"  # batched generation appends on the right
    size = image_processor.size
    if not 0 < size.shortest_edge <= size.longest_edge:
        raise ValueError(
            "need 0 < min_pixels <= max_pixels, "
            f"got min_pixels={size.shortest_edge}, max_pixels={size.longest_edge}"
        )
    return PROCESSORS[arch](
        image_processor=image_processor, tokenizer=tokenizer, chat_template=_chat_template(path, tokenizer)
    )


def flash_attn_importable() -> bool:
    """Whether ``import flash_attn`` (``model.attention: flash_attention_2``) would find a package."""
    return importlib.util.find_spec("flash_attn") is not None


def load_model(
    path: str | Path,
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    min_pixels: int | None = None,
    max_pixels: int | None = None,
    attn_implementation: str | None = None,
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Load a Qwen2-VL / Qwen2.5-VL checkpoint directory and its processor.

    ``attn_implementation`` is passed to ``from_pretrained`` ("sdpa" when None;
    "flash_attention_2" on GPUs that have it).
    """
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint directory: config.json is missing")
    with _offline():
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
    arch = config.model_type
    if arch not in MODEL_CLASSES:
        raise ValueError(
            f"unsupported model_type {arch!r} in {path}; known: {', '.join(sorted(MODEL_CLASSES))}"
        )
    with _offline():
        model = MODEL_CLASSES[arch].from_pretrained(
            str(path), dtype=dtype, local_files_only=True, attn_implementation=attn_implementation
        )
    model.to(device)
    model.eval()
    processor = load_processor(path, arch, min_pixels=min_pixels, max_pixels=max_pixels)
    return model, processor


def save_model(
    model: PreTrainedModel,
    processor: ProcessorMixin,
    out_dir: str | Path,
    *,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``model`` and ``processor`` into ``out_dir`` as a directory :func:`load_model` reads.

    ``state_dict`` gives the weights when the model holds only a shard of them (FSDP).

    The processor's parts are saved one by one so that the directory reads like a hub
    checkpoint (tokenizer files + preprocessor_config.json), not like our processor subclass.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, state_dict=state_dict)
    processor.tokenizer.save_pretrained(out)
    processor.image_processor.save_pretrained(out)
    return out

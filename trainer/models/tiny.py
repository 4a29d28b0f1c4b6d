"""Random-init Qwen2-VL / Qwen2.5-VL / Qwen3-VL models built from a config, for tests and the CPU demo.

Nothing is downloaded: the tokenizer is trained locally
(:func:`trainer.models.tokenizer.build_tokenizer`) and the weights are drawn from
the model's own initialiser under a fixed seed. Sizes:

========  ====================================  ===========================
size      text (hidden x layers, heads/kv)       vision (width x depth)
========  ====================================  ===========================
tiny      128 x 2, 4/2, MLP 256                  64 x 2  (0.67 M parameters)
small     256 x 4, 8/4, MLP 768                  128 x 4 (4.5 M parameters)
========  ====================================  ===========================

Qwen3-VL adds learned absolute position embeddings to the vision tower (Qwen2-VL's tower
knows positions only through RoPE) and DeepStack (the features of an early vision block
added to the first decoder layer): 0.78 M parameters at ``tiny``.

Config constraints that must hold (measured, see the checks in
:func:`tiny_config`): the text ``mrope_section`` sums to head_dim / 2; Qwen2-VL's
vision ``hidden_size`` (the merger output) equals the text hidden size, Qwen2.5-VL
and Qwen3-VL call it ``out_hidden_size``; the image / video / vision-start / vision-end
token ids come from the tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
    Qwen3VLConfig,
    Qwen3VLForConditionalGeneration,
)
from transformers.processing_utils import ProcessorMixin

from trainer.models.loading import save_model
from trainer.models.processor import PATCH_SIZE, build_processor
from trainer.models.tokenizer import (
    ENDOFTEXT,
    IM_END,
    IMAGE_PAD,
    VIDEO_PAD,
    VISION_END,
    VISION_START,
    build_tokenizer,
)

Arch = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
ARCHS: tuple[str, ...] = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")
Size = Literal["tiny", "small"]

# The tiny demo sees small images: 56x56 .. 224x224 pixels, i.e. 4 .. 64 image tokens.
TINY_MIN_PIXELS = 56 * 56
TINY_MAX_PIXELS = 224 * 224


@dataclass(frozen=True)
class TinyShape:
    """Widths and depths of one preset."""

    text_hidden: int  # LLM hidden size
    text_layers: int  # LLM decoder layers
    text_heads: int  # attention heads (head_dim = text_hidden / text_heads)
    text_kv_heads: int  # grouped-query key/value heads
    text_mlp: int  # LLM MLP intermediate size
    vision_hidden: int  # ViT width
    vision_layers: int  # ViT blocks
    vision_heads: int  # ViT attention heads
    init_std: float  # standard deviation of the random weights (``initializer_range``)


# init_std about 1/sqrt(text_hidden), not the 0.02 of billion-parameter configs. Measured on
# one shape per image in one of four quadrants: at 0.02 the tiny models' boxes stayed at
# chance after 900 warm-start steps (even colour-coded quadrants took 550 steps), at 0.08 the
# tiny Qwen3-VL boxed the shape in 100 of 100 held-out images after 300 steps.
SHAPES: dict[str, TinyShape] = {
    "tiny": TinyShape(128, 2, 4, 2, 256, 64, 2, 4, 0.08),
    "small": TinyShape(256, 4, 8, 4, 768, 128, 4, 4, 0.06),
}


def _mrope_section(head_dim: int) -> list[int]:
    """Split head_dim / 2 rotary frequencies over (temporal, height, width) like Qwen (16, 24, 24)."""
    half = head_dim // 2
    spatial = (half * 3) // 8
    return [half - 2 * spatial, spatial, spatial]


def tiny_config(
    tokenizer: PreTrainedTokenizerFast, arch: Arch = "qwen2_vl", size: Size = "tiny"
) -> PretrainedConfig:
    """The model config of a preset, with token ids taken from ``tokenizer``."""
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(sorted(ARCHS))}")
    if size not in SHAPES:
        raise ValueError(f"unknown size {size!r}; known: {', '.join(sorted(SHAPES))}")
    shape = SHAPES[size]
    head_dim = shape.text_hidden // shape.text_heads
    section = _mrope_section(head_dim)
    if sum(section) != head_dim // 2:
        raise AssertionError(f"mrope_section {section} must sum to head_dim / 2 = {head_dim // 2}")
    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in (ENDOFTEXT, IM_END, IMAGE_PAD, VIDEO_PAD)}
    text = {
        "vocab_size": len(tokenizer),
        "hidden_size": shape.text_hidden,
        "intermediate_size": shape.text_mlp,
        "num_hidden_layers": shape.text_layers,
        "num_attention_heads": shape.text_heads,
        "num_key_value_heads": shape.text_kv_heads,
        "max_position_embeddings": 4096,
        "max_window_layers": shape.text_layers,
        "initializer_range": shape.init_std,
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": section},
        "bos_token_id": ids[ENDOFTEXT],
        "eos_token_id": ids[IM_END],
        "pad_token_id": ids[ENDOFTEXT],
    }
    common = {
        "image_token_id": ids[IMAGE_PAD],
        "video_token_id": ids[VIDEO_PAD],
        "vision_start_token_id": tokenizer.convert_tokens_to_ids(VISION_START),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids(VISION_END),
        # Tied input/output embeddings (as Qwen2-VL-2B) keep the tiny model near 0.6 M parameters.
        "tie_word_embeddings": True,
        "initializer_range": shape.init_std,
    }
    if arch == "qwen2_vl":
        vision = {
            "depth": shape.vision_layers,
            "embed_dim": shape.vision_hidden,
            "hidden_size": shape.text_hidden,  # merger output must match the LLM width
            "mlp_ratio": 2,
            "num_heads": shape.vision_heads,
            "initializer_range": shape.init_std,
        }
        return Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    # Qwen2.5-VL and Qwen3-VL name the tower's widths alike.
    vision = {
        "depth": shape.vision_layers,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": 2 * shape.vision_hidden,
        "num_heads": shape.vision_heads,
        "out_hidden_size": shape.text_hidden,  # merger output must match the LLM width
        "initializer_range": shape.init_std,
    }
    if arch == "qwen3_vl":
        vision |= {
            # Qwen2-VL's patch, so that one image processor serves every arch.
            "patch_size": PATCH_SIZE,
            # Learned absolute positions on a grid of the largest tiny image, interpolated
            # for smaller ones: the position cue that Qwen2-VL's RoPE-only tower lacks.
            "num_position_embeddings": (math.isqrt(TINY_MAX_PIXELS) // PATCH_SIZE) ** 2,
            # DeepStack: the first block's features also enter the first decoder layer.
            "deepstack_visual_indexes": [0],
        }
        return Qwen3VLConfig(text_config=text | {"head_dim": head_dim}, vision_config=vision, **common)
    vision |= {"window_size": 112, "fullatt_block_indexes": [shape.vision_layers - 1]}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_vl": Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


def _model_class(arch: Arch) -> type[PreTrainedModel]:
    return _MODEL_CLASSES[arch]


def build_tiny_model(
    arch: Arch = "qwen2_vl", size: Size = "tiny", seed: int = 0
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a random-init model and its processor (same seed, same weights; float32, CPU)."""
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, arch, size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _model_class(arch)(config)
    model.eval()
    model.generation_config.eos_token_id = config.text_config.eos_token_id
    model.generation_config.pad_token_id = config.text_config.pad_token_id
    model.generation_config.bos_token_id = config.text_config.bos_token_id
    processor = build_processor(tokenizer, arch, min_pixels=TINY_MIN_PIXELS, max_pixels=TINY_MAX_PIXELS)
    return model, processor


def save_tiny(out_dir: str | Path, *, arch: Arch = "qwen2_vl", size: Size = "tiny", seed: int = 0) -> Path:
    """Build a tiny model and write it as a checkpoint directory that :func:`load_model` reads."""
    model, processor = build_tiny_model(arch, size, seed)
    return save_model(model, processor, out_dir)


def count_parameters(model: torch.nn.Module) -> int:
    """Number of distinct parameters (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters())

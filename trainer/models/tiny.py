"""Random-init Qwen2-VL / Qwen2.5-VL / Qwen3-VL models built from a config, for tests and the CPU demo.

Nothing is downloaded: the tokenizer is trained locally
(:func:`trainer.models.tokenizer.build_tokenizer`) and the weights are drawn from
the model's own initialiser under a fixed seed. Sizes:

========  ====================================  ===========================
size      text (hidden x layers, heads/kv)       vision (width x depth)
========  ====================================  ===========================
tiny      128 x 2, 4/2, MLP 256                  64 x 2  (0.67 M parameters)
small     256 x 4, 8/4, MLP 768                  128 x 4 (4.5 M parameters)
2b        1536 x 28, 12/2, MLP 8960              1280 x 32 (1.98 G parameters)
7b        3584 x 28, 28/4, MLP 18944             1280 x 32 (7.21 G parameters)
========  ====================================  ===========================

``2b`` and ``7b`` have the widths and depths of Qwen2-VL-2B and Qwen2-VL-7B (their
``config.json``: rope theta 1e6, 32k positions, tied embeddings at 2B only, a ViT MLP of
4 x its width; Qwen2.5-VL's SwiGLU tower is 3420 wide with full attention in blocks 7, 15,
23, 31), for measuring a step at a real model's cost; only the vocabulary is the local
tokenizer's 1024 tokens (the real models have 152k, a further 0.23 G parameters in 2B's tied
embedding and 1.08 G in 7B's two: 2.21 G and 8.29 G as published). The counts are those of
qwen2_vl; qwen2_5_vl's differ by 1 M, qwen3_vl's are 0.1 G larger. They are drawn on
the GPU when there is one (:func:`init_device`): torch draws normal numbers on one CPU core,
about 70 M a second, so ``2b`` took 31 s to build on a CPU (7.7 GiB) and ``7b`` would take
two minutes. Same seed, same weights holds per device type.

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
Size = Literal["tiny", "small", "2b", "7b"]

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
    # The fields below keep the tiny shapes as they were; the real-sized ones set them.
    vision_mlp: int | None = None  # Qwen2-VL / Qwen3-VL ViT MLP width; None = 2 x vision_hidden
    vision_glu_mlp: int | None = None  # Qwen2.5-VL ViT SwiGLU width; None = 2 x vision_hidden
    full_attention_blocks: tuple[int, ...] | None = None  # Qwen2.5-VL; None = the last block
    deepstack_blocks: tuple[int, ...] = (0,)  # Qwen3-VL blocks whose features feed the LLM
    vision_positions: int | None = None  # Qwen3-VL position grid cells; None = the tiny images'
    rope_theta: float = 10000.0  # rotary base of the LLM
    max_positions: int = 4096  # LLM max_position_embeddings
    tied: bool = True  # input and output embeddings shared
    gpu_init: bool = False  # draw the weights on the GPU when there is one


# init_std about 1/sqrt(text_hidden), not the 0.02 of billion-parameter configs. Measured on
# one shape per image in one of four quadrants: at 0.02 the tiny models' boxes stayed at
# chance after 900 warm-start steps (even colour-coded quadrants took 550 steps), at 0.08 the
# tiny Qwen3-VL boxed the shape in 100 of 100 held-out images after 300 steps.
SHAPES: dict[str, TinyShape] = {
    "tiny": TinyShape(128, 2, 4, 2, 256, 64, 2, 4, 0.08),
    "small": TinyShape(256, 4, 8, 4, 768, 128, 4, 4, 0.06),
}
# Qwen2-VL-2B / -7B's config.json (Qwen2.5-VL-7B's for the SwiGLU tower, Qwen3-VL's DeepStack
# blocks and 48 x 48 position grid); their initializer_range, 0.02.
_REAL_TOWER = {
    "vision_mlp": 4 * 1280,
    "vision_glu_mlp": 3420,
    "full_attention_blocks": (7, 15, 23, 31),
    "deepstack_blocks": (8, 16, 24),
    "vision_positions": 48 * 48,
    "rope_theta": 1_000_000.0,
    "max_positions": 32768,
    "gpu_init": True,
}
SHAPES |= {
    "2b": TinyShape(1536, 28, 12, 2, 8960, 1280, 32, 16, 0.02, **_REAL_TOWER),
    "7b": TinyShape(3584, 28, 28, 4, 18944, 1280, 32, 16, 0.02, **_REAL_TOWER, tied=False),
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
        "max_position_embeddings": shape.max_positions,
        "max_window_layers": shape.text_layers,
        "initializer_range": shape.init_std,
        "rope_parameters": {"rope_type": "default", "rope_theta": shape.rope_theta, "mrope_section": section},
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
        "tie_word_embeddings": shape.tied,
        "initializer_range": shape.init_std,
    }
    if arch == "qwen2_vl":
        vision = {
            "depth": shape.vision_layers,
            "embed_dim": shape.vision_hidden,
            "hidden_size": shape.text_hidden,  # merger output must match the LLM width
            "mlp_ratio": (shape.vision_mlp or 2 * shape.vision_hidden) // shape.vision_hidden,
            "num_heads": shape.vision_heads,
            "initializer_range": shape.init_std,
        }
        return Qwen2VLConfig(text_config=text, vision_config=vision, **common)
    # Qwen2.5-VL and Qwen3-VL name the tower's widths alike; Qwen2.5-VL's MLP is gated (SwiGLU).
    mlp = shape.vision_glu_mlp if arch == "qwen2_5_vl" else shape.vision_mlp
    vision = {
        "depth": shape.vision_layers,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": mlp or 2 * shape.vision_hidden,
        "num_heads": shape.vision_heads,
        "out_hidden_size": shape.text_hidden,  # merger output must match the LLM width
        "initializer_range": shape.init_std,
    }
    if arch == "qwen3_vl":
        # Qwen3-VL interleaves the t/h/w frequencies of its multimodal RoPE; transformers always
        # does, vLLM only when the config says so, as the published Qwen3-VL configs do.
        text["rope_parameters"]["mrope_interleaved"] = True
        vision |= {
            # Qwen2-VL's patch, so that one image processor serves every arch.
            "patch_size": PATCH_SIZE,
            # Learned absolute positions on a grid of the largest tiny image, interpolated
            # for smaller ones: the position cue that Qwen2-VL's RoPE-only tower lacks.
            "num_position_embeddings": shape.vision_positions
            or (math.isqrt(TINY_MAX_PIXELS) // PATCH_SIZE) ** 2,
            # DeepStack: the first block's features also enter the first decoder layer.
            "deepstack_visual_indexes": list(shape.deepstack_blocks),
        }
        return Qwen3VLConfig(text_config=text | {"head_dim": head_dim}, vision_config=vision, **common)
    full = shape.full_attention_blocks or (shape.vision_layers - 1,)
    vision |= {"window_size": 112, "fullatt_block_indexes": list(full)}
    return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common)


_MODEL_CLASSES: dict[str, type[PreTrainedModel]] = {
    "qwen2_vl": Qwen2VLForConditionalGeneration,
    "qwen2_5_vl": Qwen2_5_VLForConditionalGeneration,
    "qwen3_vl": Qwen3VLForConditionalGeneration,
}


def _model_class(arch: Arch) -> type[PreTrainedModel]:
    return _MODEL_CLASSES[arch]


def init_device(size: Size = "tiny") -> torch.device:
    """Where :func:`build_tiny_model` draws the weights: the GPU for ``2b`` and ``7b`` when there is one."""
    if SHAPES[size].gpu_init and torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def build_tiny_model(
    arch: Arch = "qwen2_vl", size: Size = "tiny", seed: int = 0
) -> tuple[PreTrainedModel, ProcessorMixin]:
    """Build a random-init model and its processor (same seed, same weights; float32).

    On the CPU, except ``2b`` and ``7b`` on a machine with a GPU (:func:`init_device`).
    """
    tokenizer = build_tokenizer()
    config = tiny_config(tokenizer, arch, size)
    device = init_device(size)
    with torch.random.fork_rng(devices=[device.index] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        if device.type == "cuda":
            with device:  # parameters are created, and drawn, on the GPU
                model = _model_class(arch)(config)
        else:
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

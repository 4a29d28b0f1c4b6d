"""Will the run fit on its GPUs? An estimate of each worker's memory, checked before any weight is loaded.

The estimate adds, per worker (one GPU):

- weights ``P·b`` (``b`` bytes per parameter of ``model.dtype``), gradients ``T·b`` and AdamW's
  two moments ``2·T·b`` (torch keeps them in the parameters' dtype), for ``P`` parameters of
  which ``T`` are trained — divided by the number of workers with FSDP, and kept off the GPU
  with ``engine.offload``;
- activations of one micro-batch in the backward pass: ``34·h·L·s·m·b`` for ``L`` layers of
  width ``h``, ``m`` sequences of ``s`` tokens (Korthikanti et al. 2022, arXiv 2205.05198,
  eq. 1 without the attention-score term, which memory-efficient attention does not store);
  with gradient checkpointing, one layer's worth plus each layer's input, ``(34 + 2·L)·h·s·m·b``;
- the rollout's KV cache, ``2·L·k·s·g·b`` for ``g`` sequences generated together with ``k``
  key/value channels per layer.

It is an estimate (framework buffers, fragmentation and the vision tower's activations are not
counted), used to refuse a config that cannot fit and say by how much, not to promise one that can.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from trainer.config import TrainConfig
from trainer.engine.errors import Problem

GIB = float(1 << 30)
# Share of the device's memory an estimate may take (the rest: CUDA context, buffers, fragmentation).
USABLE_SHARE = 0.9


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know of a model."""

    parameters: int
    trainable: int
    hidden: int  # width of the language model
    layers: int  # decoder layers
    kv_channels: int  # key/value heads × head size, per layer


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes one worker needs on its GPU, by part."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    kv_cache: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.kv_cache

    def describe(self) -> str:
        parts = [
            ("weights", self.weights),
            ("gradients", self.gradients),
            ("optimizer", self.optimizer),
            ("activations", self.activations),
            ("KV cache", self.kv_cache),
        ]
        return ", ".join(f"{name} {value / GIB:.1f}" for name, value in parts) + " GiB"


def estimate_memory(
    shape: ModelShape,
    *,
    dtype_bytes: int,
    shards: int,
    offload: bool,
    micro_batch: int,
    sequence: int,
    gradient_checkpointing: bool,
    generated_together: int,
) -> MemoryEstimate:
    """Per-worker bytes (see the module docstring for the terms).

    >>> shape = ModelShape(parameters=1000, trainable=500, hidden=8, layers=2, kv_channels=4)
    >>> e = estimate_memory(shape, dtype_bytes=2, shards=2, offload=False, micro_batch=1, sequence=10,
    ...                     gradient_checkpointing=False, generated_together=3)
    >>> (e.weights, e.gradients, e.optimizer, e.activations, e.kv_cache)
    (1000.0, 500.0, 1000.0, 10880.0, 960.0)
    """
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    resident = 0.0 if offload else 1.0
    weights = shape.parameters * dtype_bytes / shards * resident
    gradients = shape.trainable * dtype_bytes / shards * resident
    optimizer = 2 * shape.trainable * dtype_bytes / shards * resident
    per_layer = shape.hidden * sequence * micro_batch * dtype_bytes
    layers = (34 + 2 * shape.layers) if gradient_checkpointing else 34 * shape.layers
    activations = float(layers * per_layer)
    kv_cache = float(2 * shape.layers * shape.kv_channels * sequence * generated_together * dtype_bytes)
    return MemoryEstimate(weights, gradients, optimizer, activations, kv_cache)


def model_shape(model: torch.nn.Module) -> ModelShape:
    """The shape of a Qwen2-VL-style model (built on the meta device is enough)."""
    config = getattr(model, "config", None)
    text = getattr(config, "text_config", config)
    hidden = int(text.hidden_size)
    heads = int(text.num_attention_heads)
    head_dim = int(getattr(text, "head_dim", None) or hidden // heads)
    kv_heads = int(getattr(text, "num_key_value_heads", None) or heads)
    return ModelShape(
        parameters=sum(p.numel() for p in model.parameters()),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        hidden=hidden,
        layers=int(text.num_hidden_layers),
        kv_channels=kv_heads * head_dim,
    )


def micro_batch_rows(config: TrainConfig) -> int:
    """Longest sequences a micro-batch can hold: ``algo.micro_batch_size``, fewer under a token budget.

    >>> from trainer.config import load_config
    >>> config = load_config("tiny-cpu-demo", ["algo.micro_batch_size=16", "algo.micro_batch_tokens=2000"])
    >>> (config.data.max_prompt_length + config.rollout.max_response_length, micro_batch_rows(config))
    (576, 3)
    """
    rows = config.algo.micro_batch_size
    budget = config.algo.micro_batch_tokens
    if budget is None:
        return rows
    sequence = config.data.max_prompt_length + config.rollout.max_response_length
    return min(rows, max(1, budget // sequence))


def estimate_for(config: TrainConfig, shape: ModelShape) -> MemoryEstimate:
    """The estimate of one worker of the run ``config``."""
    engine = config.engine
    return estimate_memory(
        shape,
        dtype_bytes=torch.empty((), dtype=getattr(torch, config.model.dtype)).element_size(),
        shards=engine.workers if engine.sharding == "fsdp" else 1,
        offload=engine.offload,
        micro_batch=micro_batch_rows(config),
        sequence=config.data.max_prompt_length + config.rollout.max_response_length,
        gradient_checkpointing=config.model.gradient_checkpointing,
        generated_together=config.rollout.micro_batch_size,
    )


def memory_problems(estimate: MemoryEstimate, device_bytes: float, *, device: str) -> list[Problem]:
    """A problem when the estimate exceeds the usable share of the device, saying what to change."""
    if estimate.total <= USABLE_SHARE * device_bytes:
        return []
    return [
        Problem(
            "engine",
            f"at its longest sequences (data.max_prompt_length + rollout.max_response_length) the run "
            f"needs about {estimate.total / GIB:.1f} GiB per GPU ({estimate.describe()}), {device} has "
            f"{device_bytes / GIB:.1f} GiB; turn on model.gradient_checkpointing, lower "
            "algo.micro_batch_size (or bound it with algo.micro_batch_tokens), data.max_prompt_length or "
            "rollout.max_response_length, or shard "
            "with engine.sharding fsdp over more workers (engine.offload moves weights and optimizer "
            "to CPU memory)",
        )
    ]


def meta_model(config: TrainConfig) -> torch.nn.Module:
    """The policy's architecture on the meta device (no memory, no weights read), freeze applied."""
    from transformers import AutoConfig

    from trainer.models import build_tokenizer, freeze, tiny_config
    from trainer.models.loading import MODEL_CLASSES

    if config.model.is_tiny:
        _, arch, size = config.model.path.split(":")
        model_config = tiny_config(build_tokenizer(), arch, size)  # type: ignore[arg-type]
    else:
        model_config = AutoConfig.from_pretrained(config.model.path)
        arch = model_config.model_type
    with torch.device("meta"):
        model = MODEL_CLASSES[arch](model_config)
    freeze(model, config.model.freeze)
    return model


def fit_problems(config: TrainConfig, device: torch.device) -> list[Problem]:
    """Why the run's policy would not fit on the GPU ``device`` (none on a CPU)."""
    if device.type != "cuda":
        return []
    properties = torch.cuda.get_device_properties(device)
    estimate = estimate_for(config, model_shape(meta_model(config)))
    return memory_problems(estimate, float(properties.total_memory), device=properties.name)

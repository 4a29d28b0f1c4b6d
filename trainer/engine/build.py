"""Build what a run needs from its config: policy, optimizer, schedule, rollout backend, scorer.

Each builder is a plain function of the config; the engine chooses implementations through
registries (rollout backends, scorers), never by ``if`` on a name.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import torch
from torch.optim import AdamW, Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.algo import UpdateConfig, warmup_constant_schedule
from trainer.config import TrainConfig
from trainer.data.images import PATCH_FACTOR
from trainer.data.mixture import MixtureSampler
from trainer.data.prompt_pool import PromptPool
from trainer.engine.errors import PreflightError, Problem
from trainer.engine.memory import fit_problems
from trainer.engine.policy import LocalPolicy, Policy
from trainer.engine.scoring import Scorer
from trainer.engine.sources import SourceData
from trainer.engine.state import TrainState
from trainer.models import (
    GROUPS,
    build_processor,
    build_tiny_model,
    build_tokenizer,
    freeze,
    load_model,
    load_processor,
    param_groups,
)
from trainer.models.attention import SDPA_VARLEN
from trainer.models.attention import register as register_sdpa_varlen
from trainer.models.loading import MODEL_CLASSES
from trainer.rollout import RolloutBackend
from trainer.tracking import Tracker

Arch = Literal["qwen2_vl", "qwen2_5_vl", "qwen3_vl"]
Size = Literal["tiny", "small", "2b", "7b"]


@dataclass(frozen=True)
class Runtime:
    """The collaborators of a step that are not state: config, data, engines, tracker."""

    config: TrainConfig
    sources: dict[str, SourceData]
    processor: ProcessorMixin
    backend: RolloutBackend
    scorer: Scorer
    tracker: Tracker
    pool: PromptPool | None  # prompt-pool augmentation, None when data.prompt_pool is off
    update: UpdateConfig  # the update's hyper-parameters (its seed is replaced every step)
    pad_token_id: int


def setup_problems(config: TrainConfig) -> list[Problem]:
    """Config values that validate on their own but that the engine cannot run with."""
    problems = []
    cell = PATCH_FACTOR * PATCH_FACTOR
    if config.model.min_pixels < cell:
        problems.append(
            Problem(
                "model.min_pixels",
                f"must be at least {cell} (one {PATCH_FACTOR}x{PATCH_FACTOR} cell), "
                f"got {config.model.min_pixels}",
            )
        )
    return problems


def device_for_run() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _pixels(config: TrainConfig) -> dict[str, int]:
    return {"min_pixels": config.model.min_pixels, "max_pixels": config.model.max_pixels}


def checkpoint_arch(path: str | Path) -> str:
    """``model_type`` of a checkpoint directory's config.json (``qwen2_vl`` or ``qwen2_5_vl``)."""
    data = json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    arch = data.get("model_type") if isinstance(data, dict) else None
    if arch not in MODEL_CLASSES:
        raise ValueError(
            f"{path}: model_type {arch!r} is not supported; known: {', '.join(sorted(MODEL_CLASSES))}"
        )
    return str(arch)


def build_processor_for(config: TrainConfig) -> ProcessorMixin:
    """The policy's processor alone (cheap), resizing images into [model.min_pixels, model.max_pixels].

    Built before the model so that the pre-flight checks, which need it, fail in seconds even
    when loading the model takes minutes.
    """
    if config.model.is_tiny:
        _, arch, _ = config.model.path.split(":")
        return build_processor(build_tokenizer(), cast(Arch, arch), **_pixels(config))
    arch = checkpoint_arch(config.model.path)
    return load_processor(config.model.path, cast(Arch, arch), **_pixels(config))


def build_model(config: TrainConfig, device: torch.device) -> PreTrainedModel:
    """The policy in ``model.dtype`` on ``device``, with ``model.freeze`` applied.

    ``tiny:<arch>:<size>`` builds a random-init model offline (seeded by the run seed); anything
    else is a local checkpoint directory.
    """
    dtype = getattr(torch, config.model.dtype)
    if config.model.is_tiny:
        _, arch, size = config.model.path.split(":")
        model, _ = build_tiny_model(cast(Arch, arch), cast(Size, size), seed=config.seed)
        model = model.to(device=device, dtype=dtype)
        if config.model.attention != "sdpa":
            model.set_attn_implementation(config.model.attention)
    else:
        model, _ = load_model(
            config.model.path,
            dtype=dtype,
            device=device,
            attn_implementation=config.model.attention,
            **_pixels(config),
        )
    if config.algo.remove_padding and config.model.attention == "sdpa":
        register_sdpa_varlen()  # the packed rows' attention, sequence by sequence
        model.set_attn_implementation({"text_config": SDPA_VARLEN})
    freeze(model, config.model.freeze)
    if config.model.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return model


def group_lrs(config: TrainConfig) -> dict[str, float]:
    """Learning rate of each module group: ``model.lr.<group>``, else ``algo.lr``.

    >>> from trainer.config import load_config
    >>> group_lrs(load_config("tiny-cpu-demo", ["model.lr.vit=0.5"]))["vit"]
    0.5
    """
    return {group: getattr(config.model.lr, group) or config.algo.lr for group in GROUPS}


def build_optimizer(model: PreTrainedModel, config: TrainConfig) -> tuple[Optimizer, LRScheduler]:
    """AdamW over the trainable groups (per-group LRs) and the warm-up-then-constant schedule."""
    groups = param_groups(model, group_lrs(config), weight_decay=config.algo.weight_decay)
    optimizer = AdamW(groups, lr=config.algo.lr, weight_decay=config.algo.weight_decay)
    return optimizer, warmup_constant_schedule(optimizer, config.total_steps, config.algo.warmup_ratio)


def backend_options(config: TrainConfig) -> dict[str, Any]:
    """Keyword arguments of the rollout backend of ``config`` besides the model and processor."""
    options: dict[str, Any] = {"max_batch_size": config.rollout.micro_batch_size}
    if config.rollout.backend == "vllm":
        # the engine's KV cache and positions cover the longest prompt and response
        options["max_model_len"] = config.data.max_prompt_length + config.rollout.max_response_length
        if config.rollout.gpu_memory_utilization is not None:
            options["gpu_memory_utilization"] = config.rollout.gpu_memory_utilization
    return options


def update_config(config: TrainConfig) -> UpdateConfig:
    """The update's hyper-parameters; mini-batches are counted in responses (prompts × n)."""
    algo = config.algo
    mini = None if algo.mini_batch_size is None else algo.mini_batch_size * config.rollout.n
    return UpdateConfig(
        mini_batch_size=mini,
        micro_batch_size=algo.micro_batch_size,
        logprob_micro_batch_size=algo.logprob_micro_batch_size,
        ppo_epochs=algo.ppo_epochs,
        clip_low=algo.clip_low,
        clip_high=algo.clip_high,
        dual_clip_c=algo.dual_clip_c,
        kl_coef=algo.kl.coef if algo.kl.kind is not None else 0.0,
        kl_kind=algo.kl.kind or "k3",
        entropy_coef=algo.entropy_coef,
        max_grad_norm=algo.grad_clip,
        temperature=config.rollout.temperature,
        seed=config.seed,
        group_by_length=algo.group_by_length,
        remove_padding=algo.remove_padding,
        micro_batch_tokens=algo.micro_batch_tokens,
    )


def reference_model(model: PreTrainedModel, config: TrainConfig) -> PreTrainedModel | None:
    """A frozen copy of the initial policy when ``algo.kl`` is on, else None."""
    if config.algo.kl.kind is None:
        return None
    ref = copy.deepcopy(model)
    ref.requires_grad_(False)
    ref.eval()
    return ref


def pad_token_id(processor: ProcessorMixin) -> int:
    """The tokenizer's pad id, else its EOS id."""
    tokenizer = processor.tokenizer
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError("the tokenizer has neither a pad nor an EOS token")
    return int(pad)


def build_local_policy(config: TrainConfig, processor: ProcessorMixin, device: torch.device) -> LocalPolicy:
    """The policy in this process: model, optimizer and schedule over it, the reference if needed.

    On a GPU, a run estimated not to fit is refused (:class:`PreflightError`) before any weight is read.
    """
    problems = fit_problems(config, device)
    if problems:
        raise PreflightError(problems, "the run does not fit on this GPU")
    model = build_model(config, device)
    ref_model = reference_model(model, config)  # the initial policy, taken before a resume loads weights
    optimizer, scheduler = build_optimizer(model, config)
    return LocalPolicy(model, optimizer, scheduler, processor, pad_token_id(processor), ref_model)


def build_state(config: TrainConfig, policy: Policy, sources: dict[str, SourceData]) -> TrainState:
    """A fresh state: ``policy``, and a sampler over the sources' training rows."""
    sampler = MixtureSampler(
        {name: len(data.train) for name, data in sources.items()},
        {name: data.weight for name, data in sources.items()},
        seed=config.seed,
    )
    return TrainState(policy=policy, sampler=sampler, seed=config.seed)

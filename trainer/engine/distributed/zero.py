"""DeepSpeed ZeRO as the sharding of the data-parallel workers (``engine.sharding: deepspeed``).

ZeRO-2 shards gradients and optimizer states over the workers, ZeRO-3 the parameters too. The
update loop stays :func:`trainer.algo.update_policy_shard`: the policy's log-prob forward runs
through DeepSpeed's engine (:class:`LogprobsModule`), so that its hooks gather ZeRO-3
parameters and reduce the gradients during ``loss.backward()``; the optimizer step is
DeepSpeed's (:class:`DeepSpeedCollective`), which clips to ``algo.grad_clip`` and skips a step
whose gradient norm is not finite. Checkpoints keep format 2 (whole weights in ``policy/``,
whole optimizer states keyed by parameter name), so a run moves between DeepSpeed, FSDP and
one process in either direction.

DeepSpeed is optional (the ``gpu`` extra): it is imported inside the functions that need it,
and :func:`deepspeed_problems` refuses a config asking for it where it is not installed.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import types
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from trainer.algo.logprobs import SHARDED_LOGPROBS, token_logprobs
from trainer.config import TrainConfig
from trainer.engine.distributed.collective import TorchCollective
from trainer.engine.errors import Problem

INSTALL = "pip install 'triune[gpu]'"
# DeepSpeed's ZeRO stage when engine.zero_stage is null.
DEFAULT_STAGE = 3
ADAM_STATES = ("exp_avg", "exp_avg_sq")


def deepspeed_importable() -> bool:
    """Whether ``import deepspeed`` would find a package, without importing it."""
    return importlib.util.find_spec("deepspeed") is not None


def deepspeed_problems(config: TrainConfig, *, importable: bool) -> list[Problem]:
    """Why ``engine.sharding: deepspeed`` cannot run here; empty when it can (or is not asked for).

    >>> from trainer.config import load_config
    >>> config = load_config("tiny-cpu-demo", ["engine.sharding=deepspeed"])
    >>> [str(p) for p in deepspeed_problems(config, importable=False)]  # doctest: +ELLIPSIS
    ["engine.sharding: deepspeed is not installed here: pip install 'triune[gpu]' ..."]
    """
    if config.engine.sharding != "deepspeed":
        return []
    problems = []
    if not importable:
        problems.append(
            Problem(
                "engine.sharding",
                f"deepspeed is not installed here: {INSTALL} (DeepSpeed 0.19.8), or use engine.sharding fsdp",
            )
        )
    if config.model.dtype == "float16":
        problems.append(
            Problem(
                "model.dtype",
                "DeepSpeed trains float16 only with a loss scale, which the update does not apply; "
                "use bfloat16 or float32",
            )
        )
    return problems


def zero_stage(config: TrainConfig) -> int:
    """The ZeRO stage of the run (``engine.zero_stage``, else 3)."""
    return config.engine.zero_stage or DEFAULT_STAGE


def deepspeed_config(config: TrainConfig) -> dict[str, Any]:
    """DeepSpeed's config dict for the run (pure).

    - The optimizer and schedule are the trainer's own (AdamW over the per-group learning rates
      with the vision tower frozen, warm-up-then-constant), handed to ``deepspeed.initialize``;
      DeepSpeed does not build any (``zero_allow_untested_optimizer``).
    - ``managed_gradient_accumulation: false``: the update runs as many backward passes as a
      mini-batch has micro-batches (they vary), and every ``step()`` closes one; DeepSpeed's
      own count (``gradient_accumulation_steps``) stays 1, so it does not rescale the loss.
    - DeepSpeed averages the gradients over the workers; the update's loss is scaled by their
      number (``DeepSpeedCollective.loss_scale``, as with FSDP), so that they are summed: the
      loss is already a token-mean over the whole mini-batch.
    - ``gradient_clipping`` is ``algo.grad_clip``; DeepSpeed clips in its step.
    - bf16 when ``model.dtype`` is bfloat16; never fp16 (no loss scaling, see :func:`deepspeed_problems`).
    - ``engine.offload``: optimizer states (and with ZeRO-3 parameters) in CPU memory. The
      optimizer stays the trainer's AdamW, stepping on the CPU copies
      (``zero_force_ds_cpu_optimizer: false``; DeepSpeed would otherwise ask for its own
      ``DeepSpeedCPUAdam``, a C++ extension built on first use).
    """
    stage = zero_stage(config)
    zero: dict[str, Any] = {"stage": stage}
    if config.engine.offload:
        zero["offload_optimizer"] = {"device": "cpu"}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu"}
    ds_config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": config.algo.micro_batch_size,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": config.algo.grad_clip,
        "bf16": {"enabled": config.model.dtype == "bfloat16"},
        "fp16": {"enabled": False},
        "zero_optimization": zero,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }
    if config.engine.offload:
        ds_config["zero_force_ds_cpu_optimizer"] = False
    return ds_config


class LogprobsModule(nn.Module):
    """The policy as DeepSpeed's engine sees it: its forward is the update's log-prob forward.

    Through the engine, ZeRO-3 gathers the parameters of each submodule the forward calls
    (the LM head included), and the output's backward runs DeepSpeed's gradient reduction.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(
        self,
        batch: Mapping[str, torch.Tensor],
        response_mask: torch.Tensor,
        *,
        temperature: float,
        chunk_tokens: int,
        remove_padding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return token_logprobs(
            self.policy,
            batch,
            response_mask,
            temperature=temperature,
            chunk_tokens=chunk_tokens,
            remove_padding=remove_padding,
        )


class DeepSpeedCollective(TorchCollective):
    """:class:`TorchCollective` in lockstep whose optimizer step is DeepSpeed's (see the module docstring)."""

    def __init__(self, engine: Any, device: torch.device, *, world: int) -> None:
        super().__init__(device, lockstep=True, world=world)
        self.engine = engine

    @property
    def owns_step(self) -> bool:
        return True

    def owned_step(self, finite: bool) -> float | None:
        """DeepSpeed's step: clips, and skips (dropping the gradients) when their norm is not finite.

        A non-finite loss was back-propagated as NaN gradients (see update_policy_shard), so
        DeepSpeed skips that step on every worker too.
        """
        self.engine.step()
        if not self.engine.was_step_applied():
            return None
        if not finite:
            raise RuntimeError("DeepSpeed applied an optimizer step whose loss was not finite")
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else math.nan


@contextlib.contextmanager
def generation_ready(engine: Any) -> Iterator[None]:
    """The policy of ``engine`` ready to generate: under ZeRO-3, every parameter gathered once
    and the engine's per-module hooks removed for the block, then put back.

    Gathering alone is not enough: ZeRO-3's hooks still run before and after every submodule's
    forward, once per generated token, and on a GPU they made a 3-step run of the tiny model
    take 8.7 s a step. ZeRO-2 keeps whole parameters on every worker: nothing to do.
    """
    if engine.zero_optimization_stage() != 3:
        yield
        return
    from deepspeed.runtime.zero.stage3 import unwrap_model_for_generation

    with unwrap_model_for_generation(engine):
        yield


@contextlib.contextmanager
def gathered_parameters(model: nn.Module) -> Iterator[None]:
    """Every ZeRO-3 parameter whole for the block (generation, saving); ZeRO-2: nothing to gather.

    As with FSDP's ``gathered``, generation then runs no collective, so workers that generate
    different numbers of tokens cannot fall out of step.
    """
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters())):
        yield


def shard_with_deepspeed(
    model: nn.Module, optimizer: Optimizer, config: TrainConfig, *, world: int, device: torch.device
) -> tuple[Any, Optimizer, DeepSpeedCollective]:
    """Wrap ``model`` and its optimizer in DeepSpeed's engine; returns (engine, its optimizer, collective).

    Joins the process group already formed (``dist_init_required=False``). The trainer's
    schedule keeps working on the optimizer's groups: DeepSpeed keeps the same group dicts.
    ``token_logprobs`` of ``model`` is routed through the engine (``SHARDED_LOGPROBS``).
    """
    import deepspeed

    os.environ.setdefault("LOCAL_RANK", "0")  # one device per worker (Ray hands each its own GPU)
    engine, zero_optimizer, _, _ = deepspeed.initialize(
        model=LogprobsModule(model),
        optimizer=optimizer,
        config=deepspeed_config(config),
        dist_init_required=False,
    )

    def sharded_token_logprobs(
        self: nn.Module,
        batch: Mapping[str, torch.Tensor],
        response_mask: torch.Tensor,
        *,
        temperature: float = 1.0,
        chunk_tokens: int = 1024,
        remove_padding: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return engine(
            batch,
            response_mask,
            temperature=temperature,
            chunk_tokens=chunk_tokens,
            remove_padding=remove_padding,
        )

    setattr(model, SHARDED_LOGPROBS, types.MethodType(sharded_token_logprobs, model))
    return engine, zero_optimizer, DeepSpeedCollective(engine, device, world=world)


def full_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on the CPU (every worker takes part; all receive them)."""
    with gathered_parameters(model):
        return {name: value.detach().cpu().clone() for name, value in model.state_dict().items()}


def load_full_weights(model: nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Load whole weights into the model and into DeepSpeed's fp32 master copies (every worker)."""
    import deepspeed
    from deepspeed.utils import safe_set_full_fp32_param

    params = dict(model.named_parameters())
    with deepspeed.zero.GatheredParameters(list(params.values()), modifier_rank=0):
        missing, unexpected = model.load_state_dict(dict(weights), strict=False)
    if unexpected or [name for name in missing if name in params]:
        raise ValueError(f"the weights do not fit the model: missing {missing}, unexpected {unexpected}")
    for name, param in params.items():
        if param.requires_grad:  # the optimizer steps from its master copy, not from the parameter
            safe_set_full_fp32_param(param, weights[name].to(torch.float32))


def group_names(model: nn.Module, optimizer: Optimizer) -> list[list[str]]:
    """The parameter names of each optimizer group, in order (before DeepSpeed flattens the groups)."""
    names = {id(param): name for name, param in model.named_parameters()}
    return [[names[id(param)] for param in group["params"]] for group in optimizer.param_groups]


def _hyper_parameters(group: Mapping[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    return {key: group[key] for key in keys if key in group}


def full_optimizer_state(
    model: nn.Module, zero_optimizer: Any, names: Sequence[Sequence[str]], keys: Sequence[str]
) -> dict[str, Any]:
    """The whole optimizer state keyed by parameter name, as ``get_optimizer_state_dict`` writes it.

    ``keys`` are the torch optimizer's group hyper-parameters. Every worker takes part.
    """
    from deepspeed.utils import safe_get_full_optimizer_state

    params = dict(model.named_parameters())
    inner = zero_optimizer.optimizer  # the torch AdamW over DeepSpeed's flat fp32 partitions
    steps = [state["step"] for state in inner.state.values() if "step" in state]
    state: dict[str, dict[str, torch.Tensor]] = {}
    if steps:
        for name in (name for group in names for name in group):
            entry = {"step": torch.as_tensor(steps[0]).detach().cpu().clone()}
            for key in ADAM_STATES:
                value = safe_get_full_optimizer_state(params[name], key)
                entry[key] = value.detach().cpu().clone().reshape(params_shape(params[name]))
            state[name] = entry
    groups = [
        _hyper_parameters(group, keys) | {"params": list(group_names_)}
        for group, group_names_ in zip(zero_optimizer.param_groups, names, strict=True)
    ]
    return {"state": state, "param_groups": groups}


def params_shape(param: torch.Tensor) -> torch.Size:
    """A parameter's whole shape (ZeRO-3 keeps it in ``ds_shape``; the tensor itself is empty)."""
    return getattr(param, "ds_shape", param.shape)


def _flat_partitions(zero_optimizer: Any) -> list[torch.Tensor]:
    """The fp32 partitions the torch optimizer steps (ZeRO-2 and ZeRO-3 name them differently)."""
    flats = getattr(zero_optimizer, "single_partition_of_fp32_groups", None)
    if flats is None:
        flats = zero_optimizer.fp32_partitioned_groups_flat
    return list(flats)


def load_optimizer_state(
    model: nn.Module, zero_optimizer: Any, names: Sequence[Sequence[str]], saved: Mapping[str, Any]
) -> None:
    """Load a whole optimizer state (keyed by name, or by position as torch writes it) into ZeRO's shards.

    AdamW creates its states at its first step; a resumed run has taken none, so the states of
    DeepSpeed's fp32 partitions are created here (zeros), then every parameter's slice is
    written through DeepSpeed's ``safe_set_full_optimizer_state``.
    """
    from deepspeed.utils import safe_set_full_optimizer_state

    saved_groups = saved["param_groups"]
    if len(saved_groups) != len(names):
        raise ValueError(f"the checkpoint's optimizer has {len(saved_groups)} groups, this run {len(names)}")
    ids = [key for group in saved_groups for key in group["params"]]
    ours = [name for group in names for name in group]
    if len(ids) != len(ours):
        raise ValueError(f"the checkpoint's optimizer has {len(ids)} parameters; this run trains {len(ours)}")
    by_name = dict(zip(ids, ours, strict=True))  # position or name → this run's name (same order)
    for group, saved_group in zip(zero_optimizer.param_groups, saved_groups, strict=True):
        group.update({key: value for key, value in saved_group.items() if key != "params"})
    state = {by_name[key]: value for key, value in saved["state"].items()}
    if not state:
        return
    step = next(iter(state.values()))["step"]
    inner = zero_optimizer.optimizer
    for flat in _flat_partitions(zero_optimizer):
        inner.state[flat] = {
            "step": torch.as_tensor(step, dtype=torch.float32).clone(),
            **{key: torch.zeros_like(flat) for key in ADAM_STATES},
        }
    link = getattr(zero_optimizer, "_lazy_init_hp_params_optimizer_state", None)
    if link is not None:  # ZeRO-2 maps each parameter to its slice of the states once they exist
        zero_optimizer._hp_optimizer_states_linked = False
        link()
    params = dict(model.named_parameters())
    for name in ours:
        for key in ADAM_STATES:
            value = state[name][key].to(torch.float32).reshape(-1)
            safe_set_full_optimizer_state(params[name], value, key)

"""The policy being trained, wherever it lives: one process, or workers of a Ray cluster.

A :class:`Policy` updates itself on a rollout batch, steps its learning-rate schedule, and
saves and loads its weights and optimizer into a checkpoint directory. :class:`LocalPolicy`
is the model in this process; :class:`trainer.engine.distributed.RayPolicy` spreads it over
data-parallel workers. The step (:mod:`trainer.engine.step`) does not know which it drives.

In a checkpoint the weights are written once, as the Hugging Face directory ``policy/``;
``optimizer.pt`` holds the optimizer and the schedule.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler
from transformers import PreTrainedModel
from transformers.processing_utils import ProcessorMixin

from trainer.algo import UpdateConfig, update_policy
from trainer.checkpoint import POLICY_DIR, model_signature, save_torch, write_policy
from trainer.rollout import Rollout

OPTIMIZER_FILE = "optimizer.pt"


class Policy(Protocol):
    """What the training loop asks of the policy (besides generating: see ``Runtime.backend``)."""

    def update(
        self, rollouts: Sequence[Rollout], advantages: torch.Tensor, config: UpdateConfig
    ) -> dict[str, float]:
        """One policy update on the batch; the update's metrics."""
        ...

    def advance_schedule(self) -> None:
        """Step the learning-rate schedule once (once per training step)."""
        ...

    def signature(self) -> dict[str, Any]:
        """The model's signature (:func:`trainer.checkpoint.model_signature`)."""
        ...

    def save(self, directory: Path) -> None:
        """Write ``policy/`` and ``optimizer.pt`` into the checkpoint directory being built."""
        ...

    def load(self, directory: Path) -> None:
        """Load what :meth:`save` wrote."""
        ...

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Load ``{"model", "optimizer", "scheduler"}`` state dicts (checkpoints of format 1)."""
        ...

    def close(self) -> None:
        """Release what the policy holds (workers, process groups)."""
        ...


def step_schedule(scheduler: LRScheduler) -> None:
    """Step the LR schedule once per training step, also when every optimizer step was skipped.

    The schedule counts training steps (warm-up is a fraction of total_steps), so a skipped
    update still moves it; torch's warning about a scheduler stepped before its optimizer is
    expected then and silenced.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler.step\(\)` before")
        scheduler.step()


def hf_class(model: torch.nn.Module) -> type[PreTrainedModel]:
    """The Hugging Face class of ``model`` (FSDP2 wraps a model in a subclass of its own)."""
    for cls in type(model).__mro__:
        if issubclass(cls, PreTrainedModel) and cls.__module__.startswith("transformers."):
            return cls
    raise TypeError(f"{type(model).__name__} is not a Hugging Face model")


def read_policy_weights(model: torch.nn.Module, policy_dir: Path) -> dict[str, torch.Tensor]:
    """The state dict of ``model``'s class loaded from a ``policy/`` directory (names as ``model`` has them).

    Loading through ``from_pretrained`` maps the checkpoint's names to the model's own, which
    ``save_pretrained`` may have renamed.
    """
    dtype = next(model.parameters()).dtype
    loaded = hf_class(model).from_pretrained(policy_dir, dtype=dtype)
    return loaded.state_dict()


def read_optimizer_state(directory: Path) -> dict[str, Any]:
    """``optimizer.pt`` of a checkpoint (tensors only; no code runs while loading)."""
    state = torch.load(directory / OPTIMIZER_FILE, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or "optimizer" not in state or "scheduler" not in state:
        raise ValueError(f"{directory / OPTIMIZER_FILE} does not hold the optimizer and scheduler states")
    return state


@dataclass
class LocalPolicy:
    """The policy in this process: model, optimizer, schedule and the frozen reference, if any."""

    model: PreTrainedModel
    optimizer: Optimizer
    scheduler: LRScheduler
    processor: ProcessorMixin
    pad_token_id: int
    ref_model: PreTrainedModel | None = None  # frozen copy of the initial policy when a KL term is on

    def update(
        self, rollouts: Sequence[Rollout], advantages: torch.Tensor, config: UpdateConfig
    ) -> dict[str, float]:
        return update_policy(
            self.model,
            self.optimizer,
            rollouts,
            advantages,
            pad_token_id=self.pad_token_id,
            config=config,
            ref_model=self.ref_model,
        )

    def advance_schedule(self) -> None:
        step_schedule(self.scheduler)

    def signature(self) -> dict[str, Any]:
        return model_signature(self.model)

    def save(self, directory: Path) -> None:
        write_policy(self.model, self.processor, directory / POLICY_DIR)
        optimizer = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        save_torch(optimizer, directory / OPTIMIZER_FILE)

    def load(self, directory: Path) -> None:
        self.model.load_state_dict(read_policy_weights(self.model, directory / POLICY_DIR))
        state = read_optimizer_state(directory)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def load_state(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def close(self) -> None:
        return None

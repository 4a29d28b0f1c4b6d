"""The state a training step reads and advances, in one place (what a checkpoint will save).

Randomness is a pure function of ``(seed, step)`` and of the sampler's counters: rollout
sampling is seeded with :func:`step_seed`, prompt-pool sentences are keyed by the draw number,
mini-batch shuffles by the step seed. So the sampler's state dict, the step counter and the
module states are all a resume needs to draw, sample and update as if never stopped.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import torch

from trainer.data.mixture import MixtureSampler
from trainer.engine.policy import Policy
from trainer.monitor import LengthBaselines, baselines_from_state, baselines_state


def step_seed(seed: int, step: int, purpose: str = "rollout") -> int:
    """A 31-bit seed of (run seed, step, purpose), the same in every process.

    >>> step_seed(0, 3) == step_seed(0, 3) != step_seed(0, 4)
    True
    """
    digest = hashlib.blake2b(f"{seed}\x1f{purpose}\x1f{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (1 << 31)


@dataclass
class TrainState:
    """The policy (model, optimizer, schedule), data position, RNG seed and step counters of a run."""

    policy: Policy
    sampler: MixtureSampler  # which rows come next (seeded, resumable)
    seed: int  # every random choice of a step derives from (seed, step)
    step: int = 0  # training steps completed
    nan_streak: int = 0  # steps in a row whose update skipped an optimizer step (non-finite loss)
    skipped_total: int = 0  # optimizer steps skipped (non-finite loss or gradient norm) so far
    # per source (None: all) the response lengths that response_length/drift is measured against
    length_baselines: LengthBaselines = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly from here but the policy's (:meth:`Policy.save`)."""
        return {
            "sampler": self.sampler.state_dict(),
            "seed": self.seed,
            "step": self.step,
            "nan_streak": self.nan_streak,
            "skipped_total": self.skipped_total,
            "length_baselines": baselines_state(self.length_baselines),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`; refuses a state of another seed or data mixture.

        A state that holds the policy's tensors too (checkpoint format 1) loads them into it.
        """
        if state["seed"] != self.seed:
            raise ValueError(f"state was saved with seed {state['seed']}, this run has seed {self.seed}")
        if "model" in state:
            self.policy.load_state(state)
        self.sampler.load_state_dict(state["sampler"])
        self.step = int(state["step"])
        self.nan_streak = int(state["nan_streak"])
        self.skipped_total = int(state["skipped_total"])
        # a checkpoint saved before the drift metric existed starts the baselines afresh
        self.length_baselines = baselines_from_state(state.get("length_baselines", []))
        torch.set_rng_state(state["torch_rng"])

"""The GRPO engine: one training step read top to bottom, the loop around it, pre-flight checks.

- :func:`open_session` checks and builds a run (raises :class:`PreflightError` with every problem);
- :func:`run_loop` evaluates and trains it; :func:`train_step` is one step; a
  :class:`StopRequest` (set on SIGTERM/SIGINT by :func:`stop_on_signals`) ends it between steps;
- :class:`TrainState` holds what a step advances (the :class:`Policy`, sampler, step);
- ``engine.kind: ray`` trains on data-parallel Ray workers (:mod:`trainer.engine.distributed`).
"""

from trainer.engine.build import (
    Runtime,
    build_model,
    build_optimizer,
    build_processor_for,
    build_state,
    update_config,
)
from trainer.engine.errors import EngineFailure, PreflightError, Problem, TrainingStopped
from trainer.engine.evaluate import evaluate
from trainer.engine.loop import RunSummary, Session, build_policy, open_session, run_loop
from trainer.engine.policy import LocalPolicy, Policy
from trainer.engine.preflight import box_frame_warning, boxes_outside, preflight
from trainer.engine.scoring import build_scorer, register_scorer, reward_model_for_coordinates
from trainer.engine.sources import SourceData, load_sources
from trainer.engine.state import TrainState, step_seed
from trainer.engine.step import StepResult, grpo_advantages, train_step
from trainer.engine.stop import StopRequest, stop_on_signals

__all__ = [
    "EngineFailure",
    "LocalPolicy",
    "Policy",
    "PreflightError",
    "Problem",
    "RunSummary",
    "Runtime",
    "Session",
    "SourceData",
    "StepResult",
    "StopRequest",
    "TrainState",
    "TrainingStopped",
    "box_frame_warning",
    "boxes_outside",
    "build_model",
    "build_optimizer",
    "build_policy",
    "build_processor_for",
    "build_scorer",
    "build_state",
    "evaluate",
    "grpo_advantages",
    "load_sources",
    "open_session",
    "preflight",
    "register_scorer",
    "reward_model_for_coordinates",
    "run_loop",
    "step_seed",
    "stop_on_signals",
    "train_step",
    "update_config",
]

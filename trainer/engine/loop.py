"""A training run: set up (with pre-flight checks), evaluate, step, stop.

:func:`open_session` builds everything and refuses to start with a list of problems
(:class:`~trainer.engine.errors.PreflightError`) before any model runs; :func:`run_loop`
then evaluates before training and every ``eval.every`` steps, runs the steps, warns once
about predicted boxes outside the configured frame, and stops with
:class:`~trainer.engine.errors.TrainingStopped` after ``algo.max_nan_steps`` steps in a row
whose update hit a non-finite loss (saving a checkpoint first, so that the run can be resumed
with a lower learning rate).

Checkpoints (:mod:`trainer.checkpoint`) are saved every ``checkpoint.every`` steps, after the
last step, and when a call stops early (``max_steps``, or a stop asked through a
:class:`~trainer.engine.stop.StopRequest`, looked at between steps); ``open_session(resume=...)``
continues from one exactly: the steps that follow draw, sample and update as the uninterrupted
run would have, also when the checkpoint fell on the end of a data epoch.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from transformers.processing_utils import ProcessorMixin

from trainer.checkpoint import (
    AUTO,
    Checkpoint,
    CheckpointError,
    CheckpointManager,
    check_resume,
    checkpoint_root,
    find_checkpoint,
    latest_complete,
    restore,
)
from trainer.config import ResolvedSource, TrainConfig
from trainer.data.prompt_pool import PromptPool
from trainer.engine.build import (
    Runtime,
    backend_options,
    build_local_policy,
    build_processor_for,
    build_state,
    device_for_run,
    pad_token_id,
    setup_problems,
    update_config,
)
from trainer.engine.distributed.zero import deepspeed_importable, deepspeed_problems
from trainer.engine.errors import EngineFailure, PreflightError, Problem, TrainingStopped
from trainer.engine.evaluate import evaluate
from trainer.engine.policy import Policy
from trainer.engine.preflight import (
    DEFAULT_SAMPLE_ROWS,
    MIN_BOXES,
    box_frame_warning,
    boxes_outside,
    predicted_boxes,
    preflight,
)
from trainer.engine.scoring import build_scorer, scorer_name
from trainer.engine.sources import load_sources
from trainer.engine.state import TrainState
from trainer.engine.step import StepResult, train_step
from trainer.engine.stop import StopRequest
from trainer.models.loading import flash_attn_importable
from trainer.monitor import Metrics
from trainer.rollout import (
    RolloutBackend,
    backend_names,
    build_backend,
    vllm_cpu_build,
    vllm_importable,
    vllm_problems,
)
from trainer.tracking import ConsoleSink, MultiSink, build_tracker

# Steps whose detection responses are pooled for the box-frame check before it gives up.
BOX_CHECK_STEPS = 5


@dataclass
class Session:
    """A run ready to step: its state and its runtime. Close it to stop the reward workers."""

    state: TrainState
    runtime: Runtime
    output_dir: Path
    rows_checked: int = 0
    checkpoints: CheckpointManager | None = None  # None: no checkpoints are written
    resumed_from: Checkpoint | None = None  # None: the run starts at step 0
    checkpoint_dir: Path | None = None  # where the run's checkpoints go and resume looks
    resume_warnings: list[str] = field(default_factory=list)

    def close(self) -> None:
        try:
            self.runtime.scorer.close()
        finally:
            try:
                self.runtime.tracker.close()
            finally:
                self.state.policy.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def environment_problems(config: TrainConfig, environ: Mapping[str, str]) -> list[Problem]:
    """Registry names and secrets the run needs, checked before anything starts."""
    problems = []
    engine = config.engine
    gpus = engine.gpus_per_worker > 0 if engine.kind == "ray" else torch.cuda.is_available()
    if config.rollout.backend not in backend_names():
        problems.append(
            Problem(
                "rollout.backend",
                f"{config.rollout.backend!r} is not available here; known: {', '.join(backend_names())}",
            )
        )
    elif config.rollout.backend == "vllm":
        # Ray workers have an environment of their own: there, their backend refuses the same way.
        # Without GPUs they need vLLM's CPU build, which the driver's environment shows.
        importable = vllm_importable() if engine.kind == "local" else True
        reasons = vllm_problems(cuda_available=gpus, importable=importable, cpu_build=vllm_cpu_build())
        problems += [Problem("rollout.backend", reason) for reason in reasons]
    problems += deepspeed_problems(config, importable=deepspeed_importable())
    if config.model.attention == "flash_attention_2":
        # as for vLLM, Ray workers check their own environment
        importable = flash_attn_importable() if engine.kind == "local" else True
        if not gpus:
            problems.append(
                Problem(
                    "model.attention",
                    "flash_attention_2 runs on CUDA GPUs only, and this run has none; use sdpa",
                )
            )
        if not importable:
            problems.append(
                Problem(
                    "model.attention",
                    "flash_attention_2 needs the flash-attn package (pip install flash-attn), which is not "
                    "installed here; or use sdpa",
                )
            )
    if engine.offload and not gpus:
        problems.append(
            Problem(
                "engine.offload",
                "keeps parameters and optimizer states in CPU memory while a GPU computes, and this run has "
                "no GPU (engine.gpus_per_worker is 0, or this machine has none); leave it off",
            )
        )
    http = config.tracking.http
    if http is not None and not environ.get(http.token_env):
        problems.append(
            Problem("tracking.http.token_env", f"environment variable {http.token_env} is empty or not set")
        )
    remote = config.reward.remote
    if remote is not None and not environ.get(remote.token_env):
        problems.append(
            Problem("reward.remote.token_env", f"environment variable {remote.token_env} is empty or not set")
        )
    return problems


def build_policy(config: TrainConfig, processor: ProcessorMixin) -> tuple[Policy, RolloutBackend]:
    """The policy of ``engine.kind`` and the backend that samples from it.

    ``local``: the model in this process, sampled by the ``rollout.backend`` (with ``sharding:
    fsdp``, one FSDP worker in this process); ``ray``: workers on the Ray cluster, each sampling
    its share of the prompts.
    """
    if config.engine.kind == "ray":
        from trainer.engine.distributed import start_ray_policy  # Ray is imported only when asked for

        ray_policy = start_ray_policy(config)
        return ray_policy, ray_policy
    if config.engine.sharding in ("fsdp", "deepspeed"):
        from trainer.engine.distributed.worker import InProcessPolicy

        in_process = InProcessPolicy(config)
        return in_process, in_process
    local = build_local_policy(config, processor, device_for_run())
    backend = build_backend(
        config.rollout.backend, model=local.model, processor=processor, **backend_options(config)
    )
    return local, backend


def open_session(
    config: TrainConfig,
    sources: Sequence[ResolvedSource],
    *,
    output_dir: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    sample_rows: int = DEFAULT_SAMPLE_ROWS,
    resume: str | Path | None = None,
    resume_force: bool = False,
    checkpoints: bool = True,
) -> Session:
    """Check, load and build everything; raises :class:`PreflightError` listing every problem found.

    ``resume`` (``"latest"`` or a checkpoint path) continues from a checkpoint; one that is
    missing, incomplete, of another model, of changed data, or of another config (unless
    ``resume_force``) is refused with a :class:`PreflightError` saying why. ``"auto"`` is
    ``"latest"`` when the run has a complete checkpoint, else a start from step 0
    (``Session.resumed_from`` is None). ``checkpoints`` off writes none. Nothing is started
    (no reward worker, no metrics file) until every check passed.
    """
    env = os.environ if environ is None else environ
    problems = setup_problems(config) + environment_problems(config, env)
    if problems:
        raise PreflightError(problems, "cannot start")
    data = load_sources(sources, test_fraction=config.data.test_fraction, seed=config.seed)
    try:
        processor = build_processor_for(config)
    except (OSError, ValueError) as exc:
        raise PreflightError([Problem("model.path", str(exc))], "cannot start") from None
    rows_checked = preflight(data, processor, config, sample_rows=sample_rows)
    out = Path(output_dir if output_dir is not None else config.output_dir)
    root = checkpoint_root(config, out)
    checkpoint: Checkpoint | None = None
    skipped: list[str] = []
    if resume is not None:
        try:
            if str(resume) == AUTO:
                checkpoint = latest_complete(root, skipped=skipped)
            else:
                checkpoint = find_checkpoint(resume, root, skipped=skipped)
        except CheckpointError as exc:
            raise PreflightError([Problem("--resume", str(exc))], "cannot resume") from None
    policy, backend = build_policy(config, processor)
    try:
        state = build_state(config, policy, data)
        warnings = [f"passed over a checkpoint: {line}" for line in skipped]
        if checkpoint is not None:
            try:
                warnings += check_resume(checkpoint, config, sources, policy.signature(), force=resume_force)
                restore(state, checkpoint)
            except CheckpointError as exc:
                raise PreflightError([Problem("--resume", str(exc))], "cannot resume") from None
        manager = CheckpointManager(root, config, sources) if checkpoints else None
        tracker = build_tracker(config.tracking, output_dir=out, total_steps=config.total_steps, environ=env)
    except BaseException:
        policy.close()
        raise
    try:
        if config.reward.actors:  # scoring actors on the run's Ray cluster
            from trainer.engine.distributed.scoring_actors import start_scoring_actors

            scorer = start_scoring_actors(config)
        else:
            scorer = build_scorer(scorer_name(config.reward), config.reward, env)
    except BaseException:
        tracker.close()
        policy.close()
        raise
    runtime = Runtime(
        config=config,
        sources=data,
        processor=processor,
        backend=backend,
        scorer=scorer,
        tracker=tracker,
        pool=PromptPool(config.seed) if config.data.prompt_pool else None,
        update=update_config(config),
        pad_token_id=pad_token_id(processor),
    )
    return Session(state, runtime, out, rows_checked, manager, checkpoint, root, warnings)


@dataclass
class RunSummary:
    """What :func:`run_loop` did."""

    steps: int = 0  # training steps run by this call
    skipped_updates: int = 0  # optimizer steps skipped for non-finite losses
    evaluations: int = 0
    warnings: list[str] = field(default_factory=list)
    last_metrics: Metrics = field(default_factory=dict)
    checkpoints: list[Path] = field(default_factory=list)  # checkpoints written by this call
    stopped_by: str | None = None  # the signal that stopped the call before its last step (SIGTERM)
    last_checkpoint: Path | None = None  # when stopped: the checkpoint of the last finished step, if any


def _has_console(rt: Runtime) -> bool:
    tracker = rt.tracker
    sinks = tracker.sinks if isinstance(tracker, MultiSink) else [tracker]
    return any(isinstance(sink, ConsoleSink) for sink in sinks)


def _event(rt: Runtime, kind: str, message: str, step: int, *, warn: bool = False) -> None:
    """Record an event; a warning also goes to stderr when no console sink prints events."""
    rt.tracker.log_event(kind, message, step=step)
    if warn and not _has_console(rt):
        print(f"warning: {message}", file=sys.stderr)


def _report_bad_rows(rt: Runtime, bad: Sequence[Problem], step: int) -> None:
    for problem in bad:
        _event(rt, "bad_row", str(problem), step, warn=True)


def _evaluate(rt: Runtime, state: TrainState, summary: RunSummary) -> Metrics:
    metrics, bad = evaluate(rt, step=state.step)
    _report_bad_rows(rt, bad, state.step)
    summary.evaluations += 1
    finals = {s: v for (s, k), v in sorted(metrics.items(), key=str) if k == "eval/final" and s is not None}
    text = ", ".join(f"{s} {v:.3f}" for s, v in finals.items()) or "no test rows"
    _event(rt, "eval", f"greedy eval/final: {text}", state.step)
    return metrics


def eval_due(config: TrainConfig, step: int) -> bool:
    """Whether to evaluate after ``step`` (1-based): every ``eval.every`` steps and after the last one."""
    every = config.eval.every
    return every > 0 and (step % every == 0 or step == config.total_steps)


class _BoxFrameCheck:
    """Pools predicted boxes over the first steps until a verdict on their frame is possible."""

    def __init__(self) -> None:
        self.boxes: list[tuple[np.ndarray, tuple[int, int]]] = []
        self.steps = 0
        self.done = False

    def feed(self, rt: Runtime, result: StepResult) -> str | None:
        if self.done:
            return None
        self.steps += 1
        self.boxes += predicted_boxes(
            (result.items[r.prompt_index].verifier, r.response_text, r.image_size) for r in result.rollouts
        )
        coordinates = rt.config.data.box_coordinates
        outside, total = boxes_outside(self.boxes, coordinates)
        message = box_frame_warning(outside, total, coordinates)
        if message is not None or total >= MIN_BOXES or self.steps >= BOX_CHECK_STEPS:
            self.done = True
        return message


def nan_limit(config: TrainConfig) -> int:
    """Steps in a row with a skipped update after which the run stops (``algo.max_nan_steps``, at least 1)."""
    return max(1, config.algo.max_nan_steps)


def _save(session: Session, summary: RunSummary, *, event: bool = True) -> Path | None:
    """Write a checkpoint of the current state; None without a manager. A step is saved once."""
    manager, state = session.checkpoints, session.state
    if manager is None:
        return None
    if manager.saved and manager.saved[-1].step == state.step:
        return manager.saved[-1].path
    checkpoint = manager.save(state)
    summary.checkpoints.append(checkpoint.path)
    if event:
        session.runtime.tracker.log_event("checkpoint", f"saved {checkpoint.path}", step=state.step)
    return checkpoint.path


def run_loop(
    session: Session, *, max_steps: int | None = None, stop: StopRequest | None = None
) -> RunSummary:
    """Train until ``total_steps`` (or ``max_steps`` more steps); returns what happened.

    ``stop`` is looked at before each step (and before the evaluation before training): once
    requested, the loop saves a checkpoint of the last finished step (unless it has one
    already), records a ``stopped`` event and returns with ``stopped_by`` set. A step under way
    is finished first; when that was the last one, the call simply finishes. Raises
    :class:`TrainingStopped` when ``algo.max_nan_steps`` steps in a row skipped their update,
    after saving a checkpoint.
    """
    state, rt = session.state, session.runtime
    config = rt.config
    last = config.total_steps if max_steps is None else min(config.total_steps, state.step + max_steps)
    summary = RunSummary()
    if session.resumed_from is not None:
        rt.tracker.log_event(
            "resumed", f"resumed from {session.resumed_from.path} at step {state.step}", step=state.step
        )
    for warning in session.resume_warnings:
        summary.warnings.append(warning)
        _event(rt, "resume", warning, state.step, warn=True)
    if config.eval.before_training and state.step == 0 and not (stop is not None and stop.requested):
        rt.tracker.log(0, _evaluate(rt, state, summary))
    box_check = _BoxFrameCheck()
    while state.step < last:
        if stop is not None and stop.requested:
            return _stopped(session, summary, stop)
        try:
            result = train_step(state, rt)
        except EngineFailure as exc:  # the checkpoints written so far are intact
            rt.tracker.log_event("stopped", f"stopped at step {state.step + 1}: {exc}", step=state.step)
            raise
        summary.steps += 1
        summary.skipped_updates += result.skipped_updates
        _report_bad_rows(rt, result.bad_rows, state.step)
        metrics = dict(result.metrics)
        if result.skipped_updates:
            _event(
                rt,
                "nan_step",
                f"non-finite loss or gradient norm: {result.skipped_updates} optimizer step(s) skipped "
                f"({state.nan_streak} step(s) in a row; the run stops at {nan_limit(config)})",
                state.step,
                warn=True,
            )
        if eval_due(config, state.step):
            metrics |= _evaluate(rt, state, summary)
        rt.tracker.log(state.step, metrics)
        summary.last_metrics = metrics
        warning = box_check.feed(rt, result)
        if warning is not None:
            summary.warnings.append(warning)
            _event(rt, "box_frame", warning, state.step, warn=True)
        if state.nan_streak >= nan_limit(config):
            # The skipped updates left the weights as they were: save them, so that the run can
            # go on from here (--resume --resume-force with a lower algo.lr).
            saved = _save(session, summary, event=False)
            message = (
                f"stopped at step {state.step}: {state.nan_streak} steps in a row had a NaN/Inf loss or "
                f"gradient norm (algo.max_nan_steps = {config.algo.max_nan_steps}); lower algo.lr, check "
                "the data of the last steps, or train in float32"
            )
            data = {"checkpoint": str(saved)} if saved is not None else None
            rt.tracker.log_event("stopped", message, step=state.step, data=data)
            raise TrainingStopped(message, checkpoint=saved)
        if session.checkpoints is not None and session.checkpoints.due(state.step):
            _save(session, summary)
    if summary.steps:
        _save(session, summary)  # a call stopped by max_steps can be resumed from where it ended
    rt.tracker.log_event(
        "finished", f"{summary.steps} step(s), {summary.skipped_updates} skipped update(s)", step=state.step
    )
    return summary


def _stopped(session: Session, summary: RunSummary, stop: StopRequest) -> RunSummary:
    """End a call stopped by a signal: checkpoint the last finished step, record why, return."""
    state, rt = session.state, session.runtime
    summary.stopped_by = stop.name
    checkpoint: Path | None = None
    if summary.steps:
        try:
            checkpoint = _save(session, summary)
        except OSError as exc:  # a full disk: the earlier checkpoints are intact (atomic writes)
            _event(rt, "checkpoint_failed", f"could not save step {state.step}: {exc}", state.step, warn=True)
    elif session.resumed_from is not None:
        checkpoint = session.resumed_from.path  # no step since the resume: it is the last one
    summary.last_checkpoint = checkpoint
    data = {"signal": stop.name, "checkpoint": str(checkpoint) if checkpoint is not None else None}
    rt.tracker.log_event(
        "stopped", f"stopped by {stop.name} after step {state.step}", step=state.step, data=data
    )
    return summary

"""Saving a run's checkpoints and resuming from one, with the checks that make resume safe.

:class:`CheckpointManager` saves every ``checkpoint.every`` steps (and on demand) the training
state, the run's fingerprints (:mod:`trainer.checkpoint.fingerprint`) and what the policy
writes (its weights as a Hugging Face directory, once; its optimizer). :func:`find_checkpoint`
turns ``--resume`` into a complete checkpoint or a clear error; :func:`check_resume` refuses a
checkpoint of another config (unless forced), of changed data files, or of another model;
:func:`restore` loads it.

The manager talks to the run's state through :class:`Resumable` (``state_dict`` /
``load_state_dict``, ``policy``, ``step``), so it does not depend on the engine.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from trainer.checkpoint.fingerprint import (
    DataFingerprinter,
    config_defaults,
    config_differences,
    config_identity,
    data_differences,
    digest,
    file_sha256,
    model_differences,
)
from trainer.checkpoint.rng import capture_rng, restore_rng
from trainer.checkpoint.store import (
    Checkpoint,
    CheckpointError,
    candidates,
    check_checkpoint,
    latest_complete,
    load_state,
    save_checkpoint,
)
from trainer.config import ResolvedSource, TrainConfig

LATEST = "latest"
AUTO = "auto"  # --resume auto: the latest complete checkpoint when there is one, else step 0
RNG_KEY = "rng"


class CheckpointedPolicy(Protocol):
    """The policy's part of a checkpoint (``trainer.engine.policy.Policy`` is one)."""

    def signature(self) -> dict[str, Any]: ...

    def save(self, directory: Path) -> None: ...

    def load(self, directory: Path) -> None: ...


class Resumable(Protocol):
    """What a checkpoint saves and restores (``trainer.engine.TrainState`` is one)."""

    policy: CheckpointedPolicy
    step: int

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def checkpoint_root(config: TrainConfig, output_dir: str | Path | None = None) -> Path:
    """``checkpoint.dir``, else ``<output_dir>/checkpoints``."""
    if config.checkpoint.dir is not None:
        return Path(config.checkpoint.dir)
    return Path(output_dir if output_dir is not None else config.output_dir) / "checkpoints"


@dataclass
class CheckpointManager:
    """Saves the checkpoints of one run under ``root``."""

    root: Path
    config: TrainConfig
    sources: Sequence[ResolvedSource]
    fingerprinter: DataFingerprinter = field(default_factory=DataFingerprinter)
    saved: list[Checkpoint] = field(default_factory=list)
    data: list[dict[str, Any]] = field(default_factory=list)  # the data fingerprint, taken at creation
    after_save: Callable[[Checkpoint], None] | None = None  # e.g. copying it to remote storage

    def __post_init__(self) -> None:
        # Taken now, when the run reads its data: a file edited during the run must not make
        # later checkpoints vouch for content the run never saw.
        self.data = self.fingerprinter.fingerprint(self.sources)

    @property
    def every(self) -> int:
        return self.config.checkpoint.every

    def due(self, step: int) -> bool:
        """Whether to save after ``step`` (1-based): every ``checkpoint.every`` steps and after the last."""
        every = self.every
        return step == self.config.total_steps or (every > 0 and step % every == 0)

    def meta(self, state: Resumable) -> dict[str, Any]:
        identity = config_identity(self.config)
        return {
            "config_digest": digest(identity),
            "config": identity,
            "data": self.data,
            "model": state.policy.signature(),
            "seed": self.config.seed,
            "total_steps": self.config.total_steps,
        }

    def save(self, state: Resumable) -> Checkpoint:
        """Write a checkpoint of ``state`` now (atomically; older ones beyond ``keep_last`` go)."""
        payload = state.state_dict()
        payload[RNG_KEY] = capture_rng()
        checkpoint = save_checkpoint(
            self.root,
            state.step,
            payload,
            meta=self.meta(state),
            write_files=state.policy.save,
            keep_last=self.config.checkpoint.keep_last,
        )
        self.saved.append(checkpoint)
        if self.after_save is not None:
            self.after_save(checkpoint)
        return checkpoint


def find_checkpoint(target: str | Path, root: str | Path, *, skipped: list[str] | None = None) -> Checkpoint:
    """The checkpoint ``--resume`` names: ``latest`` (in ``root``), a checkpoint, or a directory of them.

    Raises :class:`CheckpointError` with what to do when there is none or it is unusable.
    """
    if str(target) == LATEST:
        where = Path(root)
        found = latest_complete(where, skipped=skipped)
        if found is None:
            reasons = "".join(f"\n  {line}" for line in (skipped or []))
            raise CheckpointError(
                f"no complete checkpoint in {where} to resume from; train without --resume, or give "
                f"--resume PATH{reasons}"
            )
        return found
    path = Path(target)
    if path.is_dir() and candidates(path) and not (path / "manifest.json").exists():
        found = latest_complete(path, skipped=skipped)
        if found is None:
            raise CheckpointError(f"no complete checkpoint in {path}")
        return found
    return check_checkpoint(path, verify_hashes=True)


def check_resume(
    checkpoint: Checkpoint,
    config: TrainConfig,
    sources: Sequence[ResolvedSource],
    signature: dict[str, Any],
    *,
    force: bool = False,
) -> list[str]:
    """Refuse a checkpoint this run cannot continue; return warnings for what ``force`` let through.

    Always refused: another model (parameter names or shapes differ) and changed data files
    (a resumed run would draw other samples than the interrupted one). Refused unless
    ``force``: another config (each differing field is named).
    """
    manifest = checkpoint.manifest
    where = checkpoint.path
    problems = model_differences(manifest.get("model", {}), signature)
    if problems:
        raise CheckpointError(f"{where}: cannot resume: " + "; ".join(problems))
    changes = data_differences(manifest.get("data", []), sources, hasher=file_sha256)
    if changes:
        lines = "".join(f"\n  {line}" for line in changes)
        raise CheckpointError(
            f"{where}: cannot resume: the data changed since this checkpoint was saved, so the run "
            f"would not see the samples it would have seen:{lines}\nrestore the files, or start a new run"
        )
    config_lines = config_differences(manifest.get("config", {}), config_identity(config), config_defaults())
    if config_lines and not force:
        lines = "".join(f"\n  {line}" for line in config_lines)
        raise CheckpointError(
            f"{where}: cannot resume: the checkpoint was saved with another config:{lines}\n"
            "use the same config, or pass --resume-force to continue with this one"
        )
    return [f"resuming with another config (--resume-force): {line}" for line in config_lines]


def restore(state: Resumable, checkpoint: Checkpoint) -> None:
    """Load ``checkpoint`` into ``state`` and the global RNGs; the next step is ``checkpoint.step + 1``.

    The policy's weights and optimizer come from the files it wrote (format 2), or from the
    training state itself in a checkpoint of format 1.
    """
    saved = load_state(checkpoint)
    rng = saved.pop(RNG_KEY, None)
    try:
        state.load_state_dict(saved)
        if "model" not in saved:
            state.policy.load(checkpoint.path)
    except (KeyError, OSError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{checkpoint.path}: cannot restore the training state ({exc})") from None
    if rng is not None:
        restore_rng(rng)

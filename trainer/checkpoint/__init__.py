"""Checkpoints of a training run, exact resume, and export of the policy (DESIGN.md §5).

- :class:`CheckpointManager` saves model, optimizer, scheduler, data position, counters and
  RNG states every ``checkpoint.every`` steps, atomically, keeping the last ``keep_last``;
- :func:`latest_complete` finds the newest complete checkpoint (never a partial or corrupted
  one); :func:`find_checkpoint`, :func:`check_resume` and :func:`restore` implement ``--resume``;
- :func:`export_policy` writes the policy as a Hugging Face model directory.
"""

from trainer.checkpoint.atomic import atomic_directory, save_torch
from trainer.checkpoint.export import export_policy, write_policy
from trainer.checkpoint.fingerprint import (
    DataFingerprinter,
    config_defaults,
    config_differences,
    config_identity,
    data_differences,
    model_differences,
    model_signature,
)
from trainer.checkpoint.resume import (
    AUTO,
    LATEST,
    CheckpointManager,
    Resumable,
    check_resume,
    checkpoint_root,
    find_checkpoint,
    restore,
)
from trainer.checkpoint.rng import capture_rng, restore_rng
from trainer.checkpoint.store import (
    MARKER,
    POLICY_DIR,
    STATE_FILE,
    Checkpoint,
    CheckpointError,
    check_checkpoint,
    checkpoint_name,
    latest_complete,
    list_complete,
    load_state,
    prune,
    save_checkpoint,
)

__all__ = [
    "AUTO",
    "LATEST",
    "MARKER",
    "POLICY_DIR",
    "STATE_FILE",
    "Checkpoint",
    "CheckpointError",
    "CheckpointManager",
    "DataFingerprinter",
    "Resumable",
    "atomic_directory",
    "save_torch",
    "capture_rng",
    "check_checkpoint",
    "check_resume",
    "checkpoint_name",
    "checkpoint_root",
    "config_defaults",
    "config_differences",
    "config_identity",
    "data_differences",
    "export_policy",
    "find_checkpoint",
    "latest_complete",
    "list_complete",
    "load_state",
    "model_differences",
    "model_signature",
    "prune",
    "restore",
    "restore_rng",
    "save_checkpoint",
    "write_policy",
]

"""Checkpoints of a training run, exact resume, and export of the policy (DESIGN.md §5).

- :class:`CheckpointManager` saves model, optimizer, scheduler, data position, counters and
  RNG states every ``checkpoint.every`` steps, atomically, keeping the last ``keep_last``;
- :func:`latest_complete` finds the newest complete checkpoint (never a partial or corrupted
  one); :func:`find_checkpoint`, :func:`check_resume` and :func:`restore` implement ``--resume``;
- :func:`export_policy` writes the policy as a Hugging Face model directory.

Names are imported on first use (PEP 562), so that ``trainer.checkpoint.layout`` can be read
without loading torch (the platform reads checkpoints that way).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "atomic_directory": "atomic",
    "save_torch": "atomic",
    "export_policy": "export",
    "write_policy": "export",
    "DataFingerprinter": "fingerprint",
    "config_defaults": "fingerprint",
    "config_differences": "fingerprint",
    "config_identity": "fingerprint",
    "data_differences": "fingerprint",
    "model_differences": "fingerprint",
    "model_signature": "fingerprint",
    "CheckpointError": "layout",
    "MARKER": "layout",
    "POLICY_DIR": "layout",
    "STATE_FILE": "layout",
    "checkpoint_name": "layout",
    "AUTO": "resume",
    "CheckpointManager": "resume",
    "LATEST": "resume",
    "Resumable": "resume",
    "check_resume": "resume",
    "checkpoint_root": "resume",
    "find_checkpoint": "resume",
    "restore": "resume",
    "capture_rng": "rng",
    "restore_rng": "rng",
    "Checkpoint": "store",
    "check_checkpoint": "store",
    "latest_complete": "store",
    "list_complete": "store",
    "load_state": "store",
    "prune": "store",
    "save_checkpoint": "store",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value

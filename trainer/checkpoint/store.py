"""Checkpoint directories on disk: atomic save, keep-last-K, and finding the last complete one.

Layout of ``<root>/step_00000010/``::

    trainer_state.pt   torch.save of the training state (data position, counters, RNG
                       states), loaded with ``weights_only=True``
    policy/            the policy's weights as a Hugging Face model directory
    optimizer.pt       the optimizer and LR schedule states
    manifest.json      step, fingerprints, and the size and SHA-256 of every file above
    COMPLETE           written last: the SHA-256 of manifest.json

The directory is built under a temporary name and renamed into place
(:func:`trainer.checkpoint.atomic.atomic_directory`), so a kill or a full disk during a save
never leaves a half-written ``step_*`` directory and never touches the earlier checkpoints.
A checkpoint is *complete* when its marker matches its manifest and every file listed there
has its recorded size and hash; :func:`latest_complete` returns the newest complete one and
passes over any other (a torn or corrupted copy, files edited by hand).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.checkpoint.atomic import atomic_directory, remove_stale, save_torch
from trainer.checkpoint.layout import (
    MANIFEST,
    MARKER,
    POLICY_DIR,
    STATE_FILE,
    CheckpointError,
    checkpoint_name,
    checkpoint_step,
    manifest_digest,
)

FORMAT_VERSION = 2  # 2: the weights only in policy/, the optimizer in optimizer.pt
READABLE_FORMATS = (1, 2)  # 1: model and optimizer inside trainer_state.pt
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Checkpoint:
    """A complete checkpoint directory and its manifest."""

    path: Path
    step: int
    manifest: dict[str, Any]

    @property
    def policy_dir(self) -> Path | None:
        """The Hugging Face model directory of the policy, when the checkpoint has one."""
        path = self.path / POLICY_DIR
        return path if path.is_dir() else None


def _sha256_file(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


def _file_table(directory: Path) -> dict[str, dict[str, Any]]:
    table = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        rel = path.relative_to(directory).as_posix()
        if rel in (MANIFEST, MARKER):
            continue
        table[rel] = {"size": path.stat().st_size, "sha256": _sha256_file(path)}
    return table


def save_checkpoint(
    root: str | Path,
    step: int,
    state: Mapping[str, Any],
    *,
    meta: Mapping[str, Any] | None = None,
    write_policy: Callable[[Path], object] | None = None,
    write_files: Callable[[Path], object] | None = None,
    keep_last: int | None = None,
) -> Checkpoint:
    """Write checkpoint ``step`` under ``root`` atomically; then keep only the last ``keep_last``.

    ``state`` goes to ``trainer_state.pt`` (tensors, numbers, strings, lists, dicts);
    ``meta`` (JSON) into the manifest; ``write_policy(dir)`` writes the HF model directory;
    ``write_files(dir)`` writes more files into the checkpoint directory (the policy's).
    Leftovers of interrupted saves are removed first. An error while writing (a full disk)
    propagates and leaves every existing checkpoint as it was.
    """
    if keep_last is not None and keep_last < 1:
        raise ValueError(f"keep_last must be >= 1 or None, got {keep_last}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    remove_stale(root)
    final = root / checkpoint_name(step)
    with atomic_directory(final) as tmp:
        save_torch(dict(state), tmp / STATE_FILE)
        if write_policy is not None:
            write_policy(tmp / POLICY_DIR)
        if write_files is not None:
            write_files(tmp)
        manifest = {
            "format": FORMAT_VERSION,
            "step": step,
            "created": time.time(),
            "files": _file_table(tmp),
            **dict(meta or {}),
        }
        text = json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False) + "\n"
        (tmp / MANIFEST).write_text(text, encoding="utf-8")
        (tmp / MARKER).write_text(manifest_digest(text.encode()) + "\n", encoding="utf-8")
    prune(root, keep_last or len(candidates(root)) or 1, current=step)
    return Checkpoint(final, step, manifest)


def check_checkpoint(path: str | Path, *, verify_hashes: bool = True) -> Checkpoint:
    """The checkpoint at ``path`` if it is complete; raises :class:`CheckpointError` saying why not."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: not a checkpoint directory (it does not exist)")
    marker, manifest_path = path / MARKER, path / MANIFEST
    if not marker.is_file():
        raise CheckpointError(f"{path}: incomplete checkpoint (no {MARKER} marker: the save did not finish)")
    try:
        raw = manifest_path.read_bytes()
        manifest = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable {MANIFEST} ({exc})") from None
    if marker.read_text(encoding="utf-8").strip() != manifest_digest(raw):
        raise CheckpointError(f"{path}: {MANIFEST} does not match the {MARKER} marker (edited or corrupted)")
    if not isinstance(manifest, dict) or manifest.get("format") not in READABLE_FORMATS:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        readable = " and ".join(map(str, READABLE_FORMATS))
        raise CheckpointError(f"{path}: checkpoint format {found!r}, this version reads {readable}")
    files = manifest.get("files")
    step = manifest.get("step")
    if not isinstance(files, dict) or STATE_FILE not in files or not isinstance(step, int):
        raise CheckpointError(f"{path}: {MANIFEST} lacks the step or the file table")
    for rel, entry in files.items():
        file = path / rel
        if not file.is_file():
            raise CheckpointError(f"{path}: {rel} is missing")
        if file.stat().st_size != entry.get("size"):
            raise CheckpointError(
                f"{path}: {rel} has {file.stat().st_size} bytes, the manifest says {entry.get('size')}"
            )
        if verify_hashes and _sha256_file(file) != entry.get("sha256"):
            raise CheckpointError(f"{path}: {rel} is corrupted (its SHA-256 differs from the manifest's)")
    return Checkpoint(path, step, manifest)


def candidates(root: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of every ``step_*`` directory under ``root``, newest first (complete or not)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        step = checkpoint_step(entry.name)
        if step is not None and entry.is_dir():
            found.append((step, entry))
    return sorted(found, reverse=True)


def list_complete(root: str | Path, *, verify_hashes: bool = False) -> list[Checkpoint]:
    """The complete checkpoints under ``root``, oldest first."""
    complete = []
    for _, path in reversed(candidates(root)):
        try:
            complete.append(check_checkpoint(path, verify_hashes=verify_hashes))
        except CheckpointError:
            continue
    return complete


def latest_complete(root: str | Path, *, skipped: list[str] | None = None) -> Checkpoint | None:
    """The newest complete checkpoint under ``root`` (hashes verified), or None.

    Newer directories that are partial or corrupted are passed over; the reason for each is
    appended to ``skipped`` when given.
    """
    for _, path in candidates(root):
        try:
            return check_checkpoint(path, verify_hashes=True)
        except CheckpointError as exc:
            if skipped is not None:
                skipped.append(str(exc))
    return None


def prune(root: str | Path, keep_last: int, *, current: int | None = None) -> list[Path]:
    """Keep the newest ``keep_last`` complete checkpoints; delete older ones, complete or not.

    With ``current`` (the step just saved), checkpoints newer than it are deleted too: they
    belong to a continuation that a resume from an older checkpoint abandoned, and would
    otherwise be taken for the latest. Without it, an incomplete directory newer than every
    kept checkpoint is left alone (it may be a save still in progress).
    """
    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    removed = []
    if current is not None:
        for step, path in candidates(root):
            if step > current:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
    complete = list_complete(root)
    if not complete:
        return removed
    kept = complete[-keep_last:]
    oldest_kept = kept[0].step
    keep = {c.path for c in kept}
    for step, path in candidates(root):
        if path in keep or step > oldest_kept:
            continue
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def load_state(checkpoint: Checkpoint, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The training state saved in ``checkpoint`` (tensors only; no code is run while loading)."""
    try:
        state = torch.load(checkpoint.path / STATE_FILE, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many kinds for a damaged zip or pickle
        raise CheckpointError(
            f"{checkpoint.path}: cannot read {STATE_FILE} ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{checkpoint.path}: {STATE_FILE} does not hold a state dict")
    return state

"""The names in a checkpoint directory and its completeness rule, without torch.

``step_00000010/`` holds ``manifest.json`` and a ``COMPLETE`` marker written last with the
manifest's SHA-256. Reading them needs only fsspec, so the platform (which never loads torch)
and the trainer's remote mirror share :func:`read_complete_manifest` to tell a complete
checkpoint on any file system from a torn or edited one.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

from fsspec.spec import AbstractFileSystem

MARKER = "COMPLETE"
MANIFEST = "manifest.json"
STATE_FILE = "trainer_state.pt"
POLICY_DIR = "policy"
MANIFEST_LIMIT = 16 << 20  # a manifest lists files; anything larger is not one
_NAME = re.compile(r"^step_(\d{8,})$")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message says which and why."""


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint directory's name, None for any other name.

    >>> checkpoint_step("step_00000010"), checkpoint_step(".tmp-step_00000010-ab12cd34")
    (10, None)
    """
    match = _NAME.match(name)
    return int(match.group(1)) if match else None


def checkpoint_name(step: int) -> str:
    """``step_00000010``: zero-padded so that names sort like steps.

    >>> checkpoint_name(10)
    'step_00000010'
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    return f"step_{step:08d}"


def manifest_digest(raw: bytes) -> str:
    """What the marker of a checkpoint whose manifest is ``raw`` holds."""
    return hashlib.sha256(raw).hexdigest()


def read_complete_manifest(fs: AbstractFileSystem, folder: str) -> bytes:
    """The manifest of the checkpoint ``folder`` of ``fs`` when its marker vouches for it.

    Raises :class:`CheckpointError` for a checkpoint without a marker (torn) or whose manifest
    does not match it (edited or corrupted).
    """
    try:
        with fs.open(posixpath.join(folder, MARKER), "rb") as handle:
            marker = handle.read(200).decode().strip()
        with fs.open(posixpath.join(folder, MANIFEST), "rb") as handle:
            raw = handle.read(MANIFEST_LIMIT)
    except (OSError, UnicodeDecodeError):
        raise CheckpointError(f"{folder}: incomplete checkpoint (no {MARKER} marker)") from None
    if marker != manifest_digest(raw):
        raise CheckpointError(f"{folder}: {MANIFEST} does not match the {MARKER} marker")
    return raw

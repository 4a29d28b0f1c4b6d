"""What a run leaves behind: its job logs (kept in storage so they outlive the Ray head) and
its artifacts (complete checkpoints, the exported policy, the spec), found on disk after a job.

A checkpoint is ``<output>/checkpoints/step_NNNNNNNN/`` and is complete when its ``COMPLETE``
marker holds the SHA-256 of its ``manifest.json`` (the trainer's atomic checkpoint format);
the manifest lists every file with its size, so nothing is re-hashed here.
"""

from __future__ import annotations

import hashlib
import json

from django.db import transaction

from control.models import Run, RunArtifact
from control.services.launch import run_folder, run_output_dir
from control.storage import join, storage, storage_uri
from trainer.checkpoint.layout import (
    MARKER,
    POLICY_DIR,
    CheckpointError,
    checkpoint_step,
    read_complete_manifest,
)


def log_path(run: Run, attempt: int) -> str:
    return join(run_folder(run), "logs", f"attempt-{attempt}.log")


def run_log_store(*, run: Run, attempt: int, text: str) -> str:
    """Keep a copy of an attempt's job log in storage (atomically); returns its URI."""
    fs, _ = storage()
    path = log_path(run, attempt)
    fs.makedirs(join(run_folder(run), "logs"), exist_ok=True)
    tmp = path + ".tmp"
    with fs.open(tmp, "wb") as handle:
        handle.write(text.encode("utf-8", errors="replace"))
    fs.mv(tmp, path)
    return storage_uri(fs, path)


def run_log_stored(*, run: Run, attempt: int) -> bytes | None:
    fs, _ = storage()
    path = log_path(run, attempt)
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as handle:
        return handle.read()


def complete_checkpoints(output_dir: str) -> list[tuple[int, str, dict]]:
    """(step, path, manifest) of every complete checkpoint under ``output_dir``, by step."""
    fs, _ = storage()
    root = join(output_dir, "checkpoints")
    if not fs.isdir(root):
        return []
    found = []
    for entry in fs.ls(root, detail=False):
        step = checkpoint_step(entry.rstrip("/").rsplit("/", 1)[-1])
        if step is None:
            continue
        try:
            manifest = json.loads(read_complete_manifest(fs, entry))
        except (CheckpointError, ValueError):  # torn, edited, or not JSON
            continue
        found.append((step, entry, manifest))
    return sorted(found)


def latest_checkpoint_step(run: Run) -> int | None:
    """The step of the run's newest complete checkpoint, or None when it wrote none."""
    found = complete_checkpoints(run_output_dir(run))
    return found[-1][0] if found else None


def _manifest_size(manifest: dict, prefix: str = "") -> int:
    files = manifest.get("files") or {}
    return sum(
        int(info.get("size", 0))
        for name, info in files.items()
        if isinstance(info, dict) and name.startswith(prefix)
    )


@transaction.atomic
def run_artifacts_sync(*, run: Run) -> list[RunArtifact]:
    """Register the run's complete checkpoints, the newest one's policy, its spec and logs.

    Checkpoints pruned by the trainer (``checkpoint.keep_last``) disappear from the list.
    """
    fs, _ = storage()
    found: dict[str, dict] = {}
    checkpoints = complete_checkpoints(run_output_dir(run))
    for step, path, manifest in checkpoints:
        marker_hash = _read_text(fs, join(path, MARKER))
        found[storage_uri(fs, path)] = {
            "kind": RunArtifact.Kind.CHECKPOINT,
            "step": step,
            "size_bytes": _manifest_size(manifest),
            "sha256": marker_hash,
        }
    if checkpoints:
        step, path, manifest = checkpoints[-1]
        policy = join(path, POLICY_DIR)
        if fs.isdir(policy):
            found[storage_uri(fs, policy)] = {
                "kind": RunArtifact.Kind.POLICY,
                "step": step,
                "size_bytes": _manifest_size(manifest, POLICY_DIR + "/"),
                "sha256": "",
            }
    spec = join(run_folder(run), "spec.json")
    logs = join(run_folder(run), "logs")
    extra = [(spec, RunArtifact.Kind.SPEC, None)]
    if fs.isdir(logs):
        for entry in sorted(fs.ls(logs, detail=False)):
            if entry.endswith(".log"):
                extra.append((entry, RunArtifact.Kind.LOG, None))
    for path, kind, step in extra:
        if fs.isfile(path):
            data = _read_bytes(fs, path)
            found[storage_uri(fs, path)] = {
                "kind": kind,
                "step": step,
                "size_bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
    RunArtifact.objects.filter(run=run).exclude(uri__in=list(found)).delete()
    for uri, values in found.items():
        RunArtifact.objects.update_or_create(run=run, uri=uri, defaults={**values, "attempt": run.attempt})
    return list(RunArtifact.objects.filter(run=run))


def _read_text(fs, path: str) -> str:
    try:
        return _read_bytes(fs, path).decode().strip()[:64]
    except (OSError, UnicodeDecodeError):
        return ""


def _read_bytes(fs, path: str) -> bytes:
    with fs.open(path, "rb") as handle:
        return handle.read()

"""A run's outputs on a file system every node can reach (``s3://``, ``gs://``, any fsspec URI).

When ``output_dir`` or ``checkpoint.dir`` is such a URI, the run works in a local staging folder
(``TRIUNE_STAGING_DIR``, else the system's temporary folder, one sub-folder a URI) and mirrors it:

- before it starts, the remote outputs (metric files, the warm-start model) are copied down, and
  with ``--resume`` the newest remote checkpoint that is complete, its hashes checked after the copy;
- after each checkpoint, the checkpoint is copied up with its ``COMPLETE`` marker last, so a reader
  never takes a half-copied one for complete (object stores have no atomic rename), and remote
  checkpoints that the local ``keep_last`` pruned are deleted, marker first;
- at each checkpoint and at the end, the other outputs are copied up.

A URI of the local file system (``file://``) is used as the path it names.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.spec import AbstractFileSystem

from trainer.checkpoint.atomic import atomic_directory
from trainer.checkpoint.store import (
    MANIFEST,
    MARKER,
    Checkpoint,
    CheckpointError,
    candidates,
    check_checkpoint,
    checkpoint_step,
)

LOCAL_PROTOCOLS = ("file", "local")
STAGING_ENV = "TRIUNE_STAGING_DIR"
PROBE = ".triune-write-check"


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URI of a file system other than the local one."""
    protocol, _ = fsspec.core.split_protocol(str(location))
    return protocol is not None and protocol not in LOCAL_PROTOCOLS


def local_location(location: str) -> str:
    """``file:///a/b`` as ``/a/b``; any other location unchanged."""
    protocol, path = fsspec.core.split_protocol(str(location))
    return path if protocol in LOCAL_PROTOCOLS else str(location)


def staging_base(environ: Mapping[str, str] | None = None) -> Path:
    """The folder of this machine under which remote locations are staged."""
    env = os.environ if environ is None else environ
    return Path(env.get(STAGING_ENV) or Path(tempfile.gettempdir()) / "triune-staging")


def staging_dir(uri: str, environ: Mapping[str, str] | None = None) -> Path:
    """The local folder that stands for ``uri`` on this machine (the same one on every attempt)."""
    return staging_base(environ) / hashlib.sha256(uri.encode()).hexdigest()[:16]


def is_staged(path: str | Path, environ: Mapping[str, str] | None = None) -> bool:
    """Whether ``path`` lies in this machine's staging folder (other nodes do not have it)."""
    base = staging_base(environ).resolve()
    return base in Path(path).resolve().parents


@dataclass
class Mirror:
    """A local folder and the remote folder it is copied to and from."""

    local: Path
    uri: str

    def __post_init__(self) -> None:
        self.fs: AbstractFileSystem
        self.fs, root = fsspec.core.url_to_fs(self.uri)
        self.root = root.rstrip("/")
        self.pushed: dict[Path, tuple[int, int]] = {}  # (size, mtime_ns) of each file when copied up

    def remote(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts)

    def _files(self, folder: Path, skip: Iterable[Path] = ()) -> list[Path]:
        skipped = [p.resolve() for p in skip]
        found = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            resolved = path.resolve()
            if any(resolved == s or s in resolved.parents for s in skipped):
                continue
            found.append(path)
        return found

    def push(self, *, skip: Iterable[Path] = ()) -> int:
        """Copy up every local file (but those under ``skip``) changed since this mirror last
        copied it; returns how many were copied."""
        count = 0
        for path in self._files(self.local, skip):
            stat = path.stat()
            stamp = (stat.st_size, stat.st_mtime_ns)
            if self.pushed.get(path) == stamp:
                continue
            self.fs.put_file(str(path), self.remote(path.relative_to(self.local).as_posix()))
            self.pushed[path] = stamp
            count += 1
        return count

    def pull(self, *, skip: Iterable[str] = ()) -> int:
        """Copy every remote file down (but those under the top-level names in ``skip``); returns how many."""
        if not self.fs.exists(self.root):
            return 0
        count, skipped = 0, set(skip)
        for name in self.fs.find(self.root):
            rel = posixpath.relpath(name, self.root)
            if rel.split("/", 1)[0] in skipped:
                continue
            target = self.local / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(name, str(target))
            count += 1
        return count

    # Checkpoints: the mirror's folder holds step_* directories.

    def check_writable(self) -> None:
        """Write and delete a probe file; raises ``OSError`` when the remote folder cannot be written."""
        probe = self.remote(PROBE)
        self.fs.pipe_file(probe, b"")
        self.fs.rm_file(probe)

    def remote_steps(self) -> list[tuple[int, str]]:
        """``(step, remote path)`` of every remote ``step_*`` directory, newest first."""
        if not self.fs.exists(self.root):
            return []
        found = []
        for entry in self.fs.ls(self.root, detail=False):
            step = checkpoint_step(entry.rstrip("/").rsplit("/", 1)[-1])
            if step is not None:
                found.append((step, entry.rstrip("/")))
        return sorted(found, reverse=True)

    def push_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Copy ``checkpoint`` up, marker last; then delete remote checkpoints gone locally."""
        name = checkpoint.path.name
        target = self.remote(name)
        marker = posixpath.join(target, MARKER)
        if self.fs.exists(marker):  # a step saved again after a resume from an older checkpoint
            self.fs.rm_file(marker)
        for path in self._files(checkpoint.path):
            rel = path.relative_to(checkpoint.path).as_posix()
            if rel != MARKER:
                self.fs.put_file(str(path), posixpath.join(target, rel))
        self.fs.put_file(str(checkpoint.path / MARKER), marker)
        kept = {path.name for _, path in candidates(self.local)}
        for _, remote in self.remote_steps():
            if remote.rsplit("/", 1)[-1] not in kept:
                self.delete(remote)

    def delete(self, remote: str) -> None:
        """Delete a remote checkpoint, marker first, so that what remains is never taken for complete."""
        marker = posixpath.join(remote, MARKER)
        if self.fs.exists(marker):
            self.fs.rm_file(marker)
        self.fs.rm(remote, recursive=True)

    def pull_latest(self, skipped: list[str] | None = None) -> Checkpoint | None:
        """Copy down the newest remote checkpoint that is complete; None when there is none.

        A remote one without its marker, or whose files do not match its manifest once copied,
        is passed over (the reason appended to ``skipped``). One already here, complete, is kept.
        """
        for _, remote in self.remote_steps():
            name = remote.rsplit("/", 1)[-1]
            here = self.local / name
            try:
                raw = self.fs.cat_file(posixpath.join(remote, MANIFEST))
                marker = self.fs.cat_file(posixpath.join(remote, MARKER)).decode().strip()
            except (OSError, UnicodeDecodeError):
                if skipped is not None:
                    skipped.append(f"{self.uri}/{name}: incomplete checkpoint (no {MARKER} marker)")
                continue
            if marker != hashlib.sha256(raw).hexdigest():
                if skipped is not None:
                    skipped.append(f"{self.uri}/{name}: {MANIFEST} does not match the {MARKER} marker")
                continue
            try:
                local = check_checkpoint(here, verify_hashes=True)
                if (here / MANIFEST).read_bytes() == raw:
                    return local
            except CheckpointError:
                pass
            try:
                with atomic_directory(here) as tmp:
                    for file in self.fs.find(remote):
                        target = tmp / posixpath.relpath(file, remote)
                        target.parent.mkdir(parents=True, exist_ok=True)
                        self.fs.get_file(file, str(target))
                    check_checkpoint(tmp, verify_hashes=True)
            except CheckpointError as exc:
                if skipped is not None:
                    skipped.append(f"{self.uri}/{name}: {str(exc).split(': ', 1)[-1]}")
                continue
            return check_checkpoint(here, verify_hashes=False)
        return None


@dataclass
class RemoteOutputs:
    """The mirrors of a run whose ``output_dir`` or ``checkpoint.dir`` is remote."""

    outputs: Mirror | None
    checkpoints: Mirror | None

    @property
    def output_dir(self) -> Path | None:
        return self.outputs.local if self.outputs else None

    @property
    def checkpoint_dir(self) -> Path | None:
        return self.checkpoints.local if self.checkpoints else None

    def prepare(self, *, resume: bool, skipped: list[str] | None = None) -> Checkpoint | None:
        """Check that the remote folders can be written, then copy the remote outputs down, and with
        ``resume`` the newest complete checkpoint; raises ``OSError`` when a folder cannot be reached."""
        for mirror in (self.outputs, self.checkpoints):
            if mirror is not None:
                mirror.check_writable()
                mirror.local.mkdir(parents=True, exist_ok=True)
        if self.outputs is not None:
            self.outputs.pull(skip=[PROBE, *self._nested_checkpoints()])
        if self.checkpoints is not None:
            if resume:
                return self.checkpoints.pull_latest(skipped)
        return None

    def _nested_checkpoints(self) -> list[str]:
        if self.outputs is None or self.checkpoints is None:
            return []
        local = self.checkpoints.local
        if self.outputs.local in local.parents:
            return [local.relative_to(self.outputs.local).parts[0]]
        return []

    def after_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Copy up a checkpoint just saved, then the other outputs."""
        if self.checkpoints is not None:
            self.checkpoints.push_checkpoint(checkpoint)
        self.push_outputs()

    def push_outputs(self) -> None:
        """Copy up the outputs (metric files, config, warm-start model), not the checkpoints."""
        if self.outputs is not None:
            skip = [self.checkpoints.local] if self.checkpoints is not None else []
            self.outputs.push(skip=skip)


def remote_outputs(
    output_dir: str, checkpoint_dir: str | None, environ: Mapping[str, str] | None = None
) -> RemoteOutputs | None:
    """The mirrors for these locations; None when both are local.

    A remote ``output_dir`` holds the checkpoints under ``checkpoints/`` unless ``checkpoint_dir``
    says otherwise.
    """
    outputs = checkpoints = None
    if is_remote(output_dir):
        outputs = Mirror(staging_dir(output_dir, environ), output_dir)
    if checkpoint_dir is not None:
        if is_remote(checkpoint_dir):
            checkpoints = Mirror(staging_dir(checkpoint_dir, environ), checkpoint_dir)
    elif outputs is not None:
        nested = posixpath.join(output_dir.rstrip("/"), "checkpoints")
        checkpoints = Mirror(outputs.local / "checkpoints", nested)
    if outputs is None and checkpoints is None:
        return None
    return RemoteOutputs(outputs, checkpoints)

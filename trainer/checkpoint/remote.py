"""A run's outputs on a file system every node can reach (``s3://``, ``gs://``, any fsspec URI).

When ``output_dir`` or ``checkpoint.dir`` is such a URI, the run works in a local staging folder
(``TRIUNE_STAGING_DIR``, else the system's temporary folder, one sub-folder a URI) and mirrors it:

- before it starts, the remote outputs (metric files, the warm-start model) are copied down, and
  with ``--resume`` the newest remote checkpoint that is complete, its hashes checked after the copy;
- after each checkpoint, the checkpoint is copied up with its ``COMPLETE`` marker last, so a reader
  never takes a half-copied one for complete (object stores have no atomic rename), and remote
  checkpoints that the local ``keep_last`` pruned are deleted, marker first;
- at each checkpoint and at the end, the other outputs are copied up.

The copies after a checkpoint run on a thread of their own (:mod:`trainer.checkpoint.uploads`),
so training does not wait for them.

A URI of the local file system (``file://``) is used as the path it names.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import fsspec
from fsspec.spec import AbstractFileSystem

from trainer.checkpoint.atomic import atomic_directory
from trainer.checkpoint.layout import (
    MANIFEST,
    MARKER,
    CheckpointError,
    checkpoint_step,
    read_complete_manifest,
)
from trainer.checkpoint.store import Checkpoint, candidates, check_checkpoint

LOCAL_PROTOCOLS = ("file", "local")
STAGING_ENV = "TRIUNE_STAGING_DIR"
PROBE = ".triune-write-check"
COPY_CHUNK = 8 << 20


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


def staging_record(folder: Path) -> Path:
    """The file beside a staging folder that says which URI it stands for (and what was copied)."""
    return folder.with_name(folder.name + ".json")


def write_staging_record(folder: Path, uri: str, **extra: object) -> None:
    """Record that ``folder`` stands for ``uri`` (written whole: a temporary file renamed)."""
    record = staging_record(folder)
    record.parent.mkdir(parents=True, exist_ok=True)
    tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"uri": uri, **extra}, sort_keys=True), encoding="utf-8")
    os.replace(tmp, record)


def read_staging_record(folder: Path) -> dict | None:
    """What :func:`write_staging_record` wrote for ``folder``; None when nothing (readable) was."""
    try:
        record = json.loads(staging_record(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("uri"), str) else None


def portable_location(path: str, environ: Mapping[str, str] | None = None) -> str:
    """``path`` as every node names it: a path in a staging folder as the URI it stands for.

    A staging folder's place differs between machines (``TRIUNE_STAGING_DIR``, the temporary
    folder), so what a checkpoint records of a staged ``model.path`` must be the URI.
    """
    base = staging_base(environ).resolve()
    resolved = Path(path).resolve()
    if base not in resolved.parents:
        return path
    folder = base / resolved.relative_to(base).parts[0]
    record = read_staging_record(folder)
    if record is None:
        return path
    rest = resolved.relative_to(folder).as_posix()
    return record["uri"].rstrip("/") + ("" if rest == "." else f"/{rest}")


@dataclass(frozen=True)
class FileStamp:
    """A local file as it was when looked at: its size and modification time."""

    path: Path
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp:
        stat = path.stat()
        return cls(path, stat.st_size, stat.st_mtime_ns)


def copy_prefix(source: Path, size: int, fs: AbstractFileSystem, target: str) -> None:
    """Copy the first ``size`` bytes of ``source`` to ``target``: the lines an append-only file held
    when it was looked at, not a line written since then and torn by the copy."""
    if source.stat().st_size == size:
        fs.put_file(str(source), target)
        return
    with source.open("rb") as reader, fs.open(target, "wb") as writer:
        left = size
        while left > 0:
            chunk = reader.read(min(left, COPY_CHUNK))
            if not chunk:
                raise OSError(f"{source} is shorter than the {size} bytes it had")
            writer.write(chunk)
            left -= len(chunk)


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

    def stamps(self, *, skip: Iterable[Path] = ()) -> list[FileStamp]:
        """Every local file but those under ``skip``, as it is now."""
        return [FileStamp.of(path) for path in self._files(self.local, skip)]

    def push_files(self, stamps: Iterable[FileStamp]) -> int:
        """Copy up each file as stamped (its first ``size`` bytes), unless this mirror already copied
        it in that state; returns how many were copied."""
        count = 0
        for stamp in stamps:
            key = (stamp.size, stamp.mtime_ns)
            if self.pushed.get(stamp.path) == key:
                continue
            target = self.remote(stamp.path.relative_to(self.local).as_posix())
            copy_prefix(stamp.path, stamp.size, self.fs, target)
            self.pushed[stamp.path] = key
            count += 1
        return count

    def push(self, *, skip: Iterable[Path] = ()) -> int:
        """Copy up every local file (but those under ``skip``) changed since this mirror last
        copied it; returns how many were copied."""
        return self.push_files(self.stamps(skip=skip))

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
        """Copy ``checkpoint`` up, marker last; then delete the other remote checkpoints gone locally.

        ``checkpoint.path`` may be a snapshot elsewhere; its folder's name is the step's.
        """
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
        kept = {path.name for _, path in candidates(self.local)} | {name}
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
                raw = read_complete_manifest(self.fs, remote)
            except CheckpointError as exc:
                if skipped is not None:
                    skipped.append(f"{self.uri}/{name}: {str(exc).split(': ', 1)[-1]}")
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
        for mirror in self._own_folders():
            write_staging_record(mirror.local, mirror.uri)
        if self.outputs is not None:
            self.outputs.pull(skip=[PROBE, *self._nested_checkpoints()])
        if self.checkpoints is not None:
            if resume:
                return self.checkpoints.pull_latest(skipped)
        return None

    def _checkpoints_nested(self) -> bool:
        """Whether the checkpoints' folder lies inside the outputs' (``<output_dir>/checkpoints``)."""
        return (
            self.outputs is not None
            and self.checkpoints is not None
            and self.outputs.local in self.checkpoints.local.parents
        )

    def _nested_checkpoints(self) -> list[str]:
        if not self._checkpoints_nested():
            return []
        return [self.checkpoints.local.relative_to(self.outputs.local).parts[0]]

    def _own_folders(self) -> list[Mirror]:
        """The mirrors whose local folder is a staging folder of its own (not inside another's)."""
        mirrors = [self.outputs] if self.outputs is not None else []
        if self.checkpoints is not None and not self._checkpoints_nested():
            mirrors.append(self.checkpoints)
        return mirrors

    def after_checkpoint(self, checkpoint: Checkpoint, stamps: list[FileStamp] | None = None) -> None:
        """Copy up a checkpoint, then the other outputs (as ``stamps`` says, else as they are now)."""
        if self.checkpoints is not None:
            self.checkpoints.push_checkpoint(checkpoint)
        self.push_outputs(stamps)

    def remove_staging(self) -> list[Path]:
        """Delete the local staging folders (once everything is copied up); returns those deleted."""
        removed = []
        for mirror in self._own_folders():  # checkpoints inside the outputs go with them
            shutil.rmtree(mirror.local, ignore_errors=True)
            staging_record(mirror.local).unlink(missing_ok=True)
            removed.append(mirror.local)
        return removed

    def output_stamps(self) -> list[FileStamp]:
        """The outputs (metric files, config, warm-start model) as they are now, not the checkpoints."""
        if self.outputs is None:
            return []
        skip = [self.checkpoints.local] if self.checkpoints is not None else []
        return self.outputs.stamps(skip=skip)

    def push_outputs(self, stamps: list[FileStamp] | None = None) -> None:
        """Copy up the outputs, as ``stamps`` says (else as they are now)."""
        if self.outputs is not None:
            self.outputs.push_files(self.output_stamps() if stamps is None else stamps)


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

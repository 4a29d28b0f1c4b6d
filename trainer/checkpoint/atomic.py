"""Write a directory so that it appears whole or not at all.

The directory is built under a temporary name next to its final place, every file and the
directory itself are fsync'ed, then it is renamed into place (``rename`` within one file
system is atomic on POSIX). A crash, a kill or a full disk while writing leaves at worst a
``.tmp-*`` directory, which readers ignore and the next write removes; whatever was at the
final name before stays intact until the new directory is complete.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"
OLD_PREFIX = ".old-"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory (directories: so that the names they hold are durable)."""
    flags = os.O_RDONLY | (os.O_DIRECTORY if path.is_dir() else 0)
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: Path) -> None:
    """fsync every file under ``root``, then every directory, deepest first."""
    dirs: list[Path] = []
    for current, subdirs, files in os.walk(root):
        base = Path(current)
        dirs.append(base)
        for name in files:
            fsync_path(base / name)
        del subdirs  # walked by os.walk itself
    for directory in reversed(dirs):
        fsync_path(directory)


def remove_stale(parent: Path) -> list[Path]:
    """Remove ``.tmp-*`` / ``.old-*`` leftovers of writes that were interrupted; return them."""
    removed = []
    if not parent.is_dir():
        return removed
    for entry in parent.iterdir():
        if entry.name.startswith((TMP_PREFIX, OLD_PREFIX)) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_directory(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``final`` when the block ends without error.

    An existing ``final`` is replaced only after the new one is complete and durable. On an
    exception (including ``OSError`` from a full disk) the temporary directory is removed and
    ``final`` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        fsync_tree(tmp)
        old = None
        if final.exists():
            old = final.parent / f"{OLD_PREFIX}{final.name}-{uuid.uuid4().hex[:8]}"
            os.rename(final, old)
        try:
            os.rename(tmp, final)
        except OSError:
            if old is not None:
                os.rename(old, final)
            raise
        fsync_path(final.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_torch(obj: Any, path: Path) -> None:
    """``torch.save(obj, path)``, with a failed write raised as the ``OSError`` it was.

    Given a path, torch writes through its own C++ stream and a full disk surfaces as
    ``RuntimeError: ... iostream error`` or ``unexpected pos``; through a Python file, the
    ``OSError`` of the write (ENOSPC, EFBIG) is the context of that RuntimeError, and is raised
    instead so that callers and logs name the real cause.
    """
    import torch

    try:
        with open(path, "wb") as handle:
            torch.save(obj, handle)
    except RuntimeError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from exc

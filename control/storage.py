"""Dataset storage through fsspec: a local directory by default, S3-compatible via STORAGE_URL.

Uploads are received and ingested in a local folder (:func:`ingest_root`); a finished dataset
version is then moved into storage (a rename, on local storage) or copied there (remote storage)
by :func:`publish_folder`.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from pathlib import Path

import fsspec
from django.conf import settings
from fsspec.spec import AbstractFileSystem


def storage() -> tuple[AbstractFileSystem, str]:
    """The filesystem and root path of STORAGE_URL."""
    fs, root = fsspec.core.url_to_fs(settings.STORAGE_URL)
    return fs, root.rstrip("/")


def storage_uri(fs: AbstractFileSystem, path: str) -> str:
    """A URI the trainer can open with fsspec (``file:///...`` or ``s3://...``)."""
    return fs.unstrip_protocol(path)


def join(*parts: str) -> str:
    return posixpath.join(*parts)


def staging_path(name: str) -> str:
    fs, root = storage()
    return join(root, "staging", name)


def fs_path(uri: str) -> str | None:
    """The local path of a ``file://`` URI (or a plain path); None for remote storage."""
    if uri.startswith("file://"):
        return uri[len("file://") :]
    if "://" in uri:
        return None
    return uri


def ingest_root() -> Path:
    """The local folder where uploads accumulate and are ingested: the storage folder itself when
    storage is local, else ``TRIUNE_INGEST_DIR``."""
    local = fs_path(settings.STORAGE_URL)
    return Path(local) if local is not None else Path(settings.TRIUNE_INGEST_DIR)


def publish_folder(folder: Path, relative: str) -> str:
    """Put the finished local ``folder`` at ``relative`` in storage and return the URI it has there.

    On local storage it is renamed into place. On remote storage every file is copied, and the
    local folder is deleted once all are; a failed copy deletes what was copied and raises
    ``OSError``.
    """
    fs, root = storage()
    target = join(root, relative)
    local = fs_path(settings.STORAGE_URL)
    if local is not None:
        final = Path(target)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(folder, final)
        return final.as_uri()
    try:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            fs.put_file(str(path), join(target, path.relative_to(folder).as_posix()))
    except BaseException:
        remove_folder(storage_uri(fs, target))
        raise
    shutil.rmtree(folder, ignore_errors=True)
    return storage_uri(fs, target)


def remove_folder(uri: str) -> None:
    """Delete a folder of storage (a local path or a URI), whatever of it exists."""
    local = fs_path(uri)
    if local is not None:
        shutil.rmtree(local, ignore_errors=True)
        return
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass

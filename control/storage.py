"""Dataset storage through fsspec: a local directory by default, S3-compatible via STORAGE_URL."""

from __future__ import annotations

import posixpath

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

"""A ``model.path`` on remote storage (``s3://bucket/models/qwen2-vl-7b``), copied to this node once.

The Hugging Face directory is copied into the node's staging folder for its URI
(:func:`trainer.checkpoint.remote.staging_dir`) as a whole or not at all (an atomic directory),
and the remote listing, each file's size and ETag where the store gives one, is recorded beside
it. The next run that names the same URI on this node reuses the copy when the listing is
unchanged and copies it again when it is not. Workers of the Ray engine on other nodes get the
copy from the driver through Ray's object store, as they get any staged model.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Mapping
from pathlib import Path

import fsspec

from trainer.checkpoint.atomic import atomic_directory
from trainer.checkpoint.remote import read_staging_record, staging_dir, write_staging_record

MODEL_CONFIG = "config.json"


def remote_listing(uri: str) -> dict[str, list]:
    """``{relative path: [size, etag or None]}`` of every file under ``uri``.

    Raises ``FileNotFoundError`` when there is none, or no ``config.json`` among them.
    """
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    found = fs.find(root, detail=True)
    listing = {}
    for name, info in found.items():
        rel = posixpath.relpath(name, root)
        etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
        listing[rel] = [int(info.get("size") or 0), str(etag) if etag is not None else None]
    if MODEL_CONFIG not in listing:
        raise FileNotFoundError(f"{uri} holds no {MODEL_CONFIG}: not a Hugging Face model directory")
    return listing


def stage_model(
    uri: str, environ: Mapping[str, str] | None = None, *, log: Callable[[str], None] = print
) -> Path:
    """The local copy of the model directory at ``uri``, made (or made again) when needed.

    Raises ``OSError`` when the URI cannot be read or holds no model.
    """
    listing = remote_listing(uri)
    folder = staging_dir(uri, environ)
    record = read_staging_record(folder)
    if folder.is_dir() and record is not None and record.get("files") == listing:
        log(f"train: model.path {uri}: reusing the copy in {folder}")
        return folder
    fs, root = fsspec.core.url_to_fs(uri)
    root = root.rstrip("/")
    size = sum(entry[0] for entry in listing.values())
    log(f"train: model.path {uri}: copying {len(listing)} file(s), {size / 1e6:.1f} MB, to {folder}")
    with atomic_directory(folder) as tmp:
        for rel in sorted(listing):
            target = tmp / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(posixpath.join(root, rel), str(target))
            if target.stat().st_size != listing[rel][0]:
                raise OSError(f"{uri}/{rel} changed during the copy; start the run again")
    write_staging_record(folder, uri, files=listing)
    return folder

"""An S3-compatible server on this machine (moto's standalone server) for tests of s3:// URIs."""

from __future__ import annotations

BUCKET = "triune-outputs"


def s3_options(endpoint: str) -> dict[str, str]:
    """fsspec's options for the server (also given to subprocesses as FSSPEC_S3_* variables)."""
    return {"endpoint_url": endpoint, "key": "test", "secret": "test"}


def empty_bucket(options: dict[str, str]):
    """The S3 file system with ``BUCKET`` emptied (or made)."""
    import fsspec

    fs = fsspec.filesystem("s3", skip_instance_cache=True, **options)
    if fs.exists(BUCKET):
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.invalidate_cache()
    return fs

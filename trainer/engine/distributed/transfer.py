"""Files sent between a worker and the driver through Ray, for nodes that share no file system.

A checkpoint directory is the driver's; a worker on another node writes its part (the weights
and the optimizer) in a local folder of its own and sends it in chunks, and reads a checkpoint
from chunks the driver put in Ray's object store. Each chunk is ``(relative path, offset, bytes)``,
in order, a file's chunks one after another.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

CHUNK_BYTES = 64 << 20

Chunk = tuple[str, int, bytes]


def file_chunks(folder: Path, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Chunk]:
    """Every file under ``folder`` in chunks of at most ``chunk_bytes`` (an empty file: one empty chunk)."""
    if chunk_bytes < 1:
        raise ValueError(f"chunk_bytes must be >= 1, got {chunk_bytes}")
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        offset = 0
        with path.open("rb") as handle:
            while True:
                data = handle.read(chunk_bytes)
                if data or offset == 0:
                    yield rel, offset, data
                if len(data) < chunk_bytes:
                    break
                offset += len(data)


def write_chunk(folder: Path, chunk: Chunk) -> None:
    """Write one chunk under ``folder``: offset 0 starts the file, later ones must continue it."""
    rel, offset, data = chunk
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or ".." in parts:
        raise ValueError(f"chunk path {rel!r} is not a path inside the folder")
    target = folder.joinpath(*parts)
    if offset == 0:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return
    size = target.stat().st_size if target.is_file() else None
    if size != offset:
        raise ValueError(f"chunk of {rel} at offset {offset}, but {size} bytes were written before it")
    with target.open("ab") as handle:
        handle.write(data)


def receive_chunks(folder: Path, refs: Sequence[Any]) -> None:
    """Write the chunks behind ``refs`` (Ray object refs, in order) under ``folder``, one at a time."""
    import ray

    for ref in refs:
        write_chunk(folder, ray.get(ref))

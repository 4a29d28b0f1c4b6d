"""An artifact's bytes, from local or S3 storage: a file as it is, a folder as a streamed .tar.gz.

The archive is written by a thread into a bounded queue that the response drains, so memory
stays at a few chunks whatever the size of the files (a 7B checkpoint's optimizer state is one
file of tens of GB), and a client that goes away stops the writing.
"""

from __future__ import annotations

import posixpath
import queue
import tarfile
import threading
from collections.abc import Iterator

import fsspec
from fsspec.spec import AbstractFileSystem

CHUNK = 1 << 20
QUEUE_CHUNKS = 8
_END = object()


def artifact_location(uri: str) -> tuple[AbstractFileSystem, str] | None:
    """The file system and path of an artifact's URI; None when it is no longer there."""
    fs, path = fsspec.core.url_to_fs(uri)
    try:
        return (fs, path) if fs.exists(path) else None
    except OSError:
        return None


class _QueueWriter:
    """A write-only file that hands its bytes to a queue in chunks of ``CHUNK``."""

    def __init__(self, chunks: queue.Queue, stopped: threading.Event) -> None:
        self.chunks = chunks
        self.stopped = stopped
        self.buffer = bytearray()

    def write(self, data: bytes) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK:
            self.flush()
        return len(data)

    def flush(self) -> None:
        if self.buffer:
            self.put(bytes(self.buffer))
            self.buffer.clear()

    def put(self, item: object) -> None:
        while True:
            if self.stopped.is_set():
                raise BrokenPipeError("the download was closed")
            try:
                self.chunks.put(item, timeout=0.5)
                return
            except queue.Full:
                continue


def tar_gz_stream(fs: AbstractFileSystem, folder: str, arcname: str) -> Iterator[bytes]:
    """The files under ``folder`` as a gzip-compressed tar whose members start with ``arcname/``."""
    chunks: queue.Queue = queue.Queue(maxsize=QUEUE_CHUNKS)
    stopped = threading.Event()
    writer = _QueueWriter(chunks, stopped)
    failure: list[BaseException] = []

    def produce() -> None:
        try:
            with tarfile.open(fileobj=writer, mode="w|gz") as archive:
                for path, info in sorted(fs.find(folder, detail=True).items()):
                    member = tarfile.TarInfo(posixpath.join(arcname, posixpath.relpath(path, folder)))
                    member.size = int(info.get("size") or 0)
                    with fs.open(path, "rb") as handle:
                        archive.addfile(member, handle)
            writer.flush()
        except BaseException as exc:  # noqa: BLE001 - handed to the reading side
            failure.append(exc)
        finally:
            try:
                writer.put(_END)
            except BrokenPipeError:
                pass

    thread = threading.Thread(target=produce, name="artifact-archive", daemon=True)
    thread.start()
    try:
        while (chunk := chunks.get()) is not _END:
            yield chunk
        if failure:
            raise failure[0]
    finally:
        stopped.set()
        thread.join(timeout=30)

"""A folder streamed as .tar.gz: whole, in bounded memory, and stopped when the reader goes away."""

from __future__ import annotations

import io
import os
import tarfile
import threading
import tracemalloc
from pathlib import Path

import fsspec
import pytest

from control.selectors.artifact_files import CHUNK, QUEUE_CHUNKS, artifact_location, tar_gz_stream


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "step_00000002"
    (root / "policy").mkdir(parents=True)
    (root / "manifest.json").write_text('{"step": 2}')
    (root / "policy" / "model.safetensors").write_bytes(os.urandom(3 * CHUNK + 17))
    return root


def test_the_archive_holds_every_file_under_the_name(folder: Path) -> None:
    fs = fsspec.filesystem("file")
    data = b"".join(tar_gz_stream(fs, str(folder), "run-1-checkpoint"))
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = {m.name: archive.extractfile(m).read() for m in archive.getmembers()}
    assert members == {
        "run-1-checkpoint/manifest.json": b'{"step": 2}',
        "run-1-checkpoint/policy/model.safetensors": (folder / "policy" / "model.safetensors").read_bytes(),
    }


def test_a_large_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    big = tmp_path / "ckpt"
    big.mkdir()
    with (big / "optimizer.pt").open("wb") as handle:  # 256 MB, incompressible
        for _ in range(256):
            handle.write(os.urandom(1 << 20))
    fs = fsspec.filesystem("file")
    tracemalloc.start()
    try:
        total = sum(len(chunk) for chunk in tar_gz_stream(fs, str(big), "ckpt"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 256 << 20
    assert peak < (QUEUE_CHUNKS + 8) * CHUNK  # a few chunks, not the 256 MB file


def test_a_reader_that_goes_away_stops_the_writer(tmp_path: Path) -> None:
    big = tmp_path / "ckpt"
    big.mkdir()
    (big / "a.bin").write_bytes(os.urandom(40 * CHUNK))
    stream = tar_gz_stream(fsspec.filesystem("file"), str(big), "ckpt")
    next(stream)
    stream.close()  # what Django does when the client disconnects
    assert not any(t.name == "artifact-archive" and t.is_alive() for t in threading.enumerate())


def test_a_location_that_is_gone_is_not_found(tmp_path: Path) -> None:
    assert artifact_location((tmp_path / "nope").as_uri()) is None
    fs, path = artifact_location(tmp_path.as_uri())
    assert fs.isdir(path)

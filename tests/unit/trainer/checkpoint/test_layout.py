"""The checkpoint layout read without torch: names, and the marker that vouches for a manifest."""

from __future__ import annotations

import subprocess
import sys
import uuid

import fsspec
import pytest

from trainer.checkpoint.layout import (
    MANIFEST,
    MARKER,
    CheckpointError,
    manifest_digest,
    read_complete_manifest,
)


def test_reading_the_layout_loads_no_torch() -> None:
    code = "import sys, trainer.checkpoint.layout; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_marker_is_the_manifests_sha256() -> None:
    # sha256(b"{}") computed by hand with `printf '{}' | sha256sum`
    assert manifest_digest(b"{}") == "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.fixture
def folder() -> tuple[fsspec.AbstractFileSystem, str]:
    fs = fsspec.filesystem("memory")
    path = f"/layout-{uuid.uuid4().hex[:8]}/step_00000002"
    fs.pipe_file(f"{path}/{MANIFEST}", b'{"step": 2}')
    return fs, path


def test_a_manifest_is_read_only_when_its_marker_vouches_for_it(folder) -> None:
    fs, path = folder
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        read_complete_manifest(fs, path)
    fs.pipe_file(f"{path}/{MARKER}", b"0" * 64 + b"\n")
    with pytest.raises(CheckpointError, match="does not match"):
        read_complete_manifest(fs, path)
    fs.pipe_file(f"{path}/{MARKER}", manifest_digest(b'{"step": 2}').encode() + b"\n")
    assert read_complete_manifest(fs, path) == b'{"step": 2}'
    fs.pipe_file(f"{path}/{MARKER}", b"\xff\xfe")  # not text
    with pytest.raises(CheckpointError, match="incomplete checkpoint"):
        read_complete_manifest(fs, path)

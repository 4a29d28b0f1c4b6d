"""Checkpoint files sent in chunks between nodes that share no folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.engine.distributed.transfer import file_chunks, write_chunk


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_folder_sent_in_chunks_is_rebuilt_byte_for_byte(tmp_path: Path) -> None:
    source = tmp_path / "a"
    (source / "policy").mkdir(parents=True)
    (source / "policy" / "model.safetensors").write_bytes(bytes(range(256)) * 4)  # 1,024 bytes
    (source / "optimizer.pt").write_bytes(b"x" * 300)
    (source / "empty").write_bytes(b"")
    chunks = list(file_chunks(source, chunk_bytes=100))
    # 1,024 bytes in chunks of 100: 11 chunks, offsets 0, 100, ..., 1000; 300 bytes: 3; an empty file: 1
    assert [c[1] for c in chunks if c[0] == "policy/model.safetensors"] == list(range(0, 1024, 100))
    assert [len(c[2]) for c in chunks if c[0] == "optimizer.pt"] == [100, 100, 100]
    assert [c for c in chunks if c[0] == "empty"] == [("empty", 0, b"")]
    target = tmp_path / "b"
    for chunk in chunks:
        write_chunk(target, chunk)
    assert _tree(target) == _tree(source)


@pytest.mark.parametrize("rel", ["../escape", "/etc/passwd", "", "a/../../b"])
def test_a_chunk_outside_the_folder_is_refused(tmp_path: Path, rel: str) -> None:
    with pytest.raises(ValueError, match="not a path inside the folder"):
        write_chunk(tmp_path, (rel, 0, b"x"))
    assert not any(tmp_path.parent.glob("escape")) and not (tmp_path / "b").exists()


def test_a_chunk_out_of_order_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at offset 100, but None bytes"):
        write_chunk(tmp_path, ("f", 100, b"x"))
    write_chunk(tmp_path, ("f", 0, b"abc"))
    with pytest.raises(ValueError, match="at offset 5, but 3 bytes"):
        write_chunk(tmp_path, ("f", 5, b"x"))
    write_chunk(tmp_path, ("f", 3, b"de"))
    assert (tmp_path / "f").read_bytes() == b"abcde"


def test_chunk_size_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_bytes"):
        list(file_chunks(tmp_path, chunk_bytes=0))

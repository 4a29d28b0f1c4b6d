"""Mirroring a run's outputs to an fsspec URI (the in-memory file system stands for remote storage)."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from trainer.checkpoint import MARKER, save_checkpoint
from trainer.checkpoint.remote import (
    Mirror,
    is_remote,
    is_staged,
    local_location,
    remote_outputs,
    staging_dir,
    staging_record,
)


@pytest.fixture
def uri() -> str:
    return f"memory://runs-{uuid.uuid4().hex[:8]}"


def _save(root: Path, step: int, keep_last: int | None = None):
    def write(folder: Path) -> None:
        (folder / "policy").mkdir()
        (folder / "policy" / "weights.bin").write_bytes(bytes([step]) * 10)

    return save_checkpoint(root, step, {"step": step}, write_files=write, keep_last=keep_last)


@pytest.mark.parametrize(
    ("location", "remote"),
    [
        ("s3://b/run", True),
        ("gs://b/run", True),
        ("memory://x", True),
        ("/tmp/run", False),
        ("var/runs/a", False),
        ("file:///tmp/run", False),
        ("local:///tmp/run", False),
    ],
)
def test_is_remote(location: str, remote: bool) -> None:
    assert is_remote(location) is remote


def test_local_location_strips_only_the_local_protocol() -> None:
    assert local_location("file:///tmp/run") == "/tmp/run"
    assert local_location("var/runs/a") == "var/runs/a"
    assert local_location("s3://b/run") == "s3://b/run"


def test_staging_is_one_folder_a_uri_under_the_configured_base(tmp_path: Path) -> None:
    env = {"TRIUNE_STAGING_DIR": str(tmp_path)}
    first = staging_dir("s3://b/run/1", env)
    assert first == staging_dir("s3://b/run/1", env) and first.parent == tmp_path
    assert first != staging_dir("s3://b/run/2", env)


def test_only_paths_inside_the_staging_folder_are_staged(tmp_path: Path) -> None:
    env = {"TRIUNE_STAGING_DIR": str(tmp_path / "staging")}
    assert is_staged(staging_dir("s3://b/run", env) / "warm_start", env)
    assert not is_staged(tmp_path / "staging", env)  # the folder itself holds no run
    assert not is_staged(tmp_path / "models" / "qwen", env)
    assert not is_staged(tmp_path / "staging-other" / "x", env)


def test_remote_outputs_maps_each_remote_location(tmp_path: Path) -> None:
    env = {"TRIUNE_STAGING_DIR": str(tmp_path)}
    assert remote_outputs("/tmp/out", None, env) is None
    assert remote_outputs("/tmp/out", "/tmp/ckpt", env) is None
    both = remote_outputs("s3://b/out", None, env)
    assert both.outputs.uri == "s3://b/out" and both.checkpoints.uri == "s3://b/out/checkpoints"
    assert both.checkpoints.local == both.outputs.local / "checkpoints"
    only = remote_outputs("/tmp/out", "s3://b/ckpt", env)
    assert only.outputs is None and only.checkpoints.uri == "s3://b/ckpt"
    apart = remote_outputs("s3://b/out", "/tmp/ckpt", env)
    assert apart.checkpoints is None and apart.outputs.uri == "s3://b/out"


def test_a_pushed_checkpoint_is_pulled_on_another_node_hashes_checked(tmp_path: Path, uri: str) -> None:
    here = Mirror(tmp_path / "a", uri)
    here.push_checkpoint(_save(here.local, 2))
    here.push_checkpoint(_save(here.local, 4))
    here.push_checkpoint(_save(here.local, 6, keep_last=2))  # step 2 pruned here: gone remotely too
    fs = fsspec.filesystem("memory")
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(here.root, detail=False)) == [
        "step_00000004",
        "step_00000006",
    ]

    there = Mirror(tmp_path / "b", uri)
    pulled = there.pull_latest()
    assert pulled is not None and pulled.step == 6 and pulled.path == tmp_path / "b" / "step_00000006"
    assert (pulled.path / "policy" / "weights.bin").read_bytes() == bytes([6]) * 10
    assert there.pull_latest().path == pulled.path  # already here: kept, not copied again


def test_pull_passes_over_torn_and_corrupted_copies(tmp_path: Path, uri: str) -> None:
    here = Mirror(tmp_path / "a", uri)
    for step in (2, 4, 6):
        here.push_checkpoint(_save(here.local, step))
    fs = fsspec.filesystem("memory")
    fs.rm_file(f"{here.root}/step_00000006/{MARKER}")
    fs.pipe_file(f"{here.root}/step_00000004/policy/weights.bin", b"x" * 10)  # same size, other bytes
    skipped: list[str] = []
    pulled = Mirror(tmp_path / "b", uri).pull_latest(skipped)
    assert pulled.step == 2
    assert "step_00000006: incomplete checkpoint" in skipped[0]
    assert "weights.bin is corrupted" in skipped[1]
    assert not (tmp_path / "b" / "step_00000004").exists()  # nothing half-copied is left


def test_a_step_saved_again_replaces_the_remote_copy(tmp_path: Path, uri: str) -> None:
    here = Mirror(tmp_path / "a", uri)
    here.push_checkpoint(_save(here.local, 2))
    (here.local / "step_00000002" / "policy" / "weights.bin").unlink()
    again = save_checkpoint(here.local, 2, {"step": 2, "again": True})
    here.push_checkpoint(again)
    pulled = Mirror(tmp_path / "b", uri).pull_latest()
    assert pulled.manifest == again.manifest


def test_outputs_pushed_and_pulled_without_the_checkpoints(tmp_path: Path, uri: str) -> None:
    outputs = remote_outputs(uri, None, {"TRIUNE_STAGING_DIR": str(tmp_path / "a")})
    outputs.prepare(resume=False)
    (outputs.output_dir / "metrics.jsonl").write_text("{}\n")
    (outputs.output_dir / "warm_start").mkdir()
    (outputs.output_dir / "warm_start" / "summary.json").write_text("{}")
    outputs.after_checkpoint(_save(outputs.checkpoint_dir, 1))
    other = remote_outputs(uri, None, {"TRIUNE_STAGING_DIR": str(tmp_path / "b")})
    assert other.prepare(resume=False) is None  # without --resume no checkpoint is copied
    assert (other.output_dir / "metrics.jsonl").read_text() == "{}\n"
    assert (other.output_dir / "warm_start" / "summary.json").exists()
    assert not any(other.checkpoint_dir.iterdir())
    assert other.prepare(resume=True).step == 1


def test_push_copies_only_what_changed_since_the_last_push(tmp_path: Path, uri: str) -> None:
    mirror = Mirror(tmp_path / "a", uri)
    (mirror.local / "warm_start").mkdir(parents=True)
    (mirror.local / "warm_start" / "model.safetensors").write_bytes(b"w" * 100)
    (mirror.local / "metrics.jsonl").write_text("{}\n")
    assert mirror.push() == 2
    with (mirror.local / "metrics.jsonl").open("a") as handle:
        handle.write("{}\n")
    assert mirror.push() == 1  # the metric file grew; the model is not copied again
    assert fsspec.filesystem("memory").cat_file(mirror.remote("metrics.jsonl")) == b"{}\n{}\n"


def test_removing_the_staging_deletes_the_mirrors_folders_and_records(tmp_path: Path, uri: str) -> None:
    env = {"TRIUNE_STAGING_DIR": str(tmp_path)}
    mirrors = remote_outputs(uri, None, env)
    mirrors.prepare(resume=False)
    _save(mirrors.checkpoint_dir, 2)
    assert staging_record(mirrors.output_dir).is_file()
    assert mirrors.remove_staging() == [mirrors.output_dir]  # the checkpoints were inside it
    assert not mirrors.output_dir.exists() and not staging_record(mirrors.output_dir).exists()
    apart = remote_outputs(uri + "-out", uri + "-ckpt", env)
    apart.prepare(resume=False)
    assert apart.remove_staging() == [apart.output_dir, apart.checkpoint_dir]
    assert list(tmp_path.iterdir()) == []

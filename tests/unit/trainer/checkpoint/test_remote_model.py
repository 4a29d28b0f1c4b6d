"""A ``model.path`` URI copied to the node once, and staged paths named as the URIs they stand for."""

from __future__ import annotations

import uuid
from pathlib import Path

import fsspec
import pytest

from trainer.checkpoint.fingerprint import config_identity
from trainer.checkpoint.remote import portable_location, staging_dir, write_staging_record
from trainer.checkpoint.remote_model import stage_model
from trainer.config import check_model_path, load_config


@pytest.fixture
def model_uri() -> str:
    """A model directory on the in-memory file system: a config, weights, a tokenizer file."""
    uri = f"memory://models-{uuid.uuid4().hex[:8]}/qwen"
    fs = fsspec.filesystem("memory")
    root = uri.split("://", 1)[1]
    fs.pipe_file(f"{root}/config.json", b'{"model_type": "qwen2_vl"}')
    fs.pipe_file(f"{root}/model.safetensors", b"w" * 4096)
    fs.pipe_file(f"{root}/tokenizer/vocab.json", b"{}")
    return uri


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TRIUNE_STAGING_DIR", str(tmp_path / "staging"))
    return {"TRIUNE_STAGING_DIR": str(tmp_path / "staging")}


def test_the_model_is_copied_once_and_reused_while_unchanged(model_uri: str, env: dict) -> None:
    lines: list[str] = []
    folder = stage_model(model_uri, env, log=lines.append)
    assert folder == staging_dir(model_uri, env)
    assert (folder / "model.safetensors").read_bytes() == b"w" * 4096
    assert (folder / "tokenizer" / "vocab.json").read_bytes() == b"{}"
    assert "copying 3 file(s)" in lines[0]
    stamp = (folder / "model.safetensors").stat().st_mtime_ns

    assert stage_model(model_uri, env, log=lines.append) == folder
    assert "reusing the copy" in lines[1]
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not copied again

    fsspec.filesystem("memory").pipe_file(f"{model_uri.split('://', 1)[1]}/model.safetensors", b"v" * 10)
    stage_model(model_uri, env, log=lines.append)
    assert "copying 3 file(s)" in lines[2]  # the remote model changed: copied again
    assert (folder / "model.safetensors").read_bytes() == b"v" * 10


def test_a_uri_without_a_model_is_refused_and_nothing_is_left(tmp_path: Path, env: dict) -> None:
    uri = f"memory://models-{uuid.uuid4().hex[:8]}/empty"
    fsspec.filesystem("memory").pipe_file(f"{uri.split('://', 1)[1]}/weights.bin", b"x")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        stage_model(uri, env)
    assert not staging_dir(uri, env).exists()


def test_a_copy_cut_half_way_leaves_no_folder(model_uri: str, env: dict, monkeypatch) -> None:
    fs = fsspec.filesystem("memory")
    real_get = fs.get_file

    def cut(source: str, target: str, **kwargs) -> None:
        if source.endswith("model.safetensors"):
            raise ConnectionResetError("connection reset by peer")
        real_get(source, target, **kwargs)

    monkeypatch.setattr(fs, "get_file", cut)
    with pytest.raises(ConnectionResetError):
        stage_model(model_uri, env)
    folder = staging_dir(model_uri, env)
    assert not folder.exists() and not list(folder.parent.glob(".tmp-*"))


def test_staged_paths_are_named_by_their_uri(tmp_path: Path, env: dict) -> None:
    folder = staging_dir("s3://bucket/runs/7/output", env)
    folder.mkdir(parents=True)
    assert portable_location(str(folder / "warm_start")) == str(folder / "warm_start")  # no record yet
    write_staging_record(folder, "s3://bucket/runs/7/output/")
    assert portable_location(str(folder / "warm_start")) == "s3://bucket/runs/7/output/warm_start"
    assert portable_location(str(folder)) == "s3://bucket/runs/7/output"
    assert portable_location(str(tmp_path / "models" / "qwen")) == str(tmp_path / "models" / "qwen")
    assert portable_location("tiny:qwen2_vl:tiny") == "tiny:qwen2_vl:tiny"


def test_a_checkpoint_identity_is_the_same_on_nodes_with_other_staging_folders(
    model_uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identities = []
    for node in ("a", "b"):
        monkeypatch.setenv("TRIUNE_STAGING_DIR", str(tmp_path / node))
        folder = stage_model(model_uri, log=lambda line: None)
        config = load_config("tiny-cpu-demo", [f"model.path={folder}"])
        identities.append(config_identity(config))
    assert identities[0] == identities[1]
    assert identities[0]["model"]["path"] == model_uri


def test_check_model_path_reads_a_uri(model_uri: str) -> None:
    config = load_config("tiny-cpu-demo", [f"model.path={model_uri}"])
    assert check_model_path(config) == []
    missing = load_config("tiny-cpu-demo", [f"model.path={model_uri}-nope"])
    [problem] = check_model_path(missing)
    assert problem.field == "model.path" and "no config.json" in problem.message
    unknown = load_config("tiny-cpu-demo", ["model.path=nosuchproto://bucket/model"])
    [problem] = check_model_path(unknown)
    assert "cannot be read" in problem.message

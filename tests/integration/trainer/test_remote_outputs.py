"""``output_dir`` on S3 (an S3-compatible server on this machine): checkpoints copied up and resumed
from on another node, equal to the uninterrupted local run."""

from __future__ import annotations

import shutil
from pathlib import Path

import fsspec
import pytest

from tests.s3_server import BUCKET, empty_bucket, s3_options
from trainer.__main__ import main
from trainer.checkpoint import MARKER, list_complete
from trainer.checkpoint.remote import STAGING_ENV, staging_dir
from trainer.models import save_tiny

from .test_resume import _assert_same_state, _points, _state


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """fsspec's S3 file system on the local server, with an empty bucket; staging under tmp_path."""
    options = s3_options(s3_endpoint)
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    monkeypatch.setenv(STAGING_ENV, str(tmp_path / "staging"))
    return empty_bucket(options)


def _train(config: Path, out: str, *extra: str) -> int:
    return main(["train", "--config", str(config), "--output-dir", out, *extra])


def test_a_run_on_s3_resumes_on_another_node_as_the_uninterrupted_run(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys
) -> None:
    config = write_config(synth_dir, total_steps=4, checkpoint={"every": 2, "keep_last": 1})
    assert _train(config, str(tmp_path / "straight")) == 0
    uri = f"s3://{BUCKET}/runs/7/output"
    assert _train(config, uri, "--steps", "2") == 0
    out = capsys.readouterr().out
    assert f"copied to {uri}" in out
    assert f"train: checkpoint of step 2 copied to {uri}/checkpoints/step_00000002" in out
    s3.invalidate_cache()
    run = f"{BUCKET}/runs/7/output"
    assert s3.exists(f"{run}/checkpoints/step_00000002/{MARKER}")
    assert s3.exists(f"{run}/checkpoints/step_00000002/policy/model.safetensors")
    assert s3.exists(f"{run}/metrics.jsonl") and s3.exists(f"{run}/config.yaml")

    assert (staging_dir(uri) / "checkpoints" / "step_00000002").is_dir()  # kept: the run is not finished
    shutil.rmtree(staging_dir(uri))  # the next attempt runs on a node that never saw this run
    assert _train(config, uri, "--resume") == 0
    out = capsys.readouterr().out
    assert "train: copied the checkpoint of step 2 from" in out
    assert "train: finished 2 step(s)" in out
    assert f"train: removed the staging folder {staging_dir(uri)}: the finished run is in" in out
    assert not staging_dir(uri).exists()  # the finished run is all in the bucket
    s3.invalidate_cache()
    steps = sorted(p.rsplit("/", 1)[-1] for p in s3.ls(f"{run}/checkpoints"))
    assert steps == ["step_00000004"]  # keep_last 1: step 2 is gone remotely too

    copy = tmp_path / "copy"
    s3.get(f"{run}/", str(copy), recursive=True)
    assert [c.step for c in list_complete(copy / "checkpoints")] == [4]
    _assert_same_state(_state(tmp_path / "straight"), _state(copy))
    assert _points(tmp_path / "straight") == _points(copy)  # the metric file spans both attempts


def test_resume_passes_over_a_remote_checkpoint_whose_copy_was_cut(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys
) -> None:
    config = write_config(synth_dir, total_steps=4, checkpoint={"every": 2, "keep_last": None})
    uri = f"s3://{BUCKET}/runs/8/output"
    assert _train(config, uri, "--steps", "4") == 0
    run = f"{BUCKET}/runs/8/output/checkpoints"
    s3.invalidate_cache()
    s3.rm_file(f"{run}/step_00000004/{MARKER}")  # a copy stopped before its marker
    s3.pipe(f"{run}/step_00000002/optimizer.pt", b"torn")  # and an older one damaged
    assert not staging_dir(uri).exists()  # the finished run's staging is gone: the resume reads S3
    capsys.readouterr()
    assert _train(config, uri, "--resume") == 2
    captured = capsys.readouterr()
    assert "passed over a remote checkpoint" in captured.out
    assert "step_00000004: incomplete checkpoint" in captured.out
    assert "optimizer.pt has 4 bytes" in captured.out
    assert "no complete checkpoint" in captured.err


def test_an_unreachable_output_dir_is_refused_before_training(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys
) -> None:
    config = write_config(synth_dir, total_steps=2)
    assert _train(config, "s3://no-such-bucket-here/run") == 2
    err = capsys.readouterr().err
    assert "train: cannot use s3://no-such-bucket-here/run" in err
    assert not (tmp_path / "staging").exists() or not any((tmp_path / "staging").rglob("*.safetensors"))


def test_a_model_on_s3_is_copied_to_the_node_once_and_a_resume_on_another_node_accepts_it(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = save_tiny(tmp_path / "model", arch="qwen2_vl")
    s3.put(str(model), f"{BUCKET}/models/tiny-qwen2-vl", recursive=True)
    s3.invalidate_cache()
    uri = f"s3://{BUCKET}/models/tiny-qwen2-vl"
    config = write_config(synth_dir, total_steps=2, model={"path": uri}, checkpoint={"every": 1})
    out = f"s3://{BUCKET}/runs/9/output"
    assert _train(config, out, "--steps", "1") == 0
    lines = capsys.readouterr().out
    assert f"train: model.path {uri}: copying" in lines and "step 1/2 |" in lines
    assert (staging_dir(uri) / "model.safetensors").is_file()

    monkeypatch.setenv(STAGING_ENV, str(tmp_path / "other-node"))  # another node: nothing staged
    assert _train(config, out, "--resume") == 0
    lines = capsys.readouterr().out
    assert f"train: model.path {uri}: copying" in lines  # this node had no copy
    assert "resumed from" in lines and "at step 1" in lines  # the checkpoint names the URI, not a path
    assert _train(config, str(tmp_path / "local-out"), "--steps", "1") == 0
    assert f"train: model.path {uri}: reusing the copy" in capsys.readouterr().out


def test_a_model_uri_without_a_model_is_refused_before_anything_runs(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys
) -> None:
    missing = f"s3://{BUCKET}/models/none"
    config = write_config(synth_dir, total_steps=2, model={"path": missing})
    assert _train(config, str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert f"model.path: {missing!r} is not a checkpoint directory (no config.json" in err
    assert not (tmp_path / "out").exists()


def test_a_finished_run_whose_last_copy_failed_keeps_its_staging(
    synth_dir: Path, tmp_path: Path, write_config, s3, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    from trainer.checkpoint.remote import Mirror

    def refused(self, checkpoint) -> None:
        raise PermissionError("Access Denied")

    monkeypatch.setattr(Mirror, "push_checkpoint", refused)
    config = write_config(synth_dir, total_steps=2, checkpoint={"every": 2})
    uri = f"s3://{BUCKET}/runs/10/output"
    assert _train(config, uri) == 0  # the run goes on; the copy is a warning
    captured = capsys.readouterr()
    assert "train: warning: could not copy the checkpoint of step 2" in captured.err
    assert "Access Denied" in captured.err and "removed the staging folder" not in captured.out
    assert (staging_dir(uri) / "checkpoints" / "step_00000002").is_dir()  # the only copy: kept

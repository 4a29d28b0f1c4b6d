"""Checkpoints and ``--resume``: exact continuation, the epoch boundary, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from trainer.__main__ import main
from trainer.checkpoint import MARKER, STATE_FILE, latest_complete, list_complete, load_state
from trainer.config import build_run_spec, config_from_dict
from trainer.data.reader import iter_samples, write_parquet
from trainer.engine import TrainingStopped, open_session, run_loop

from .conftest import SOURCES, checkpoint_state, small_config
from .test_train_nan import NanSwitch

CHECKPOINTS = {"every": 2, "keep_last": None}


def _train(config: Path, out: Path, *extra: str) -> int:
    return main(["train", "--config", str(config), "--output-dir", str(out), *extra])


def _points(out: Path) -> list[tuple]:
    """Metric points of a run, without the timings (``perf/*`` differ from run to run)."""
    points = []
    for line in (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines():
        obj = json.loads(line)
        if "key" in obj and not obj["key"].startswith("perf/"):
            points.append((obj["step"], obj["source"] or "", obj["key"], obj["value"]))
    return sorted(points)


def _events(out: Path) -> list[dict]:
    lines = (out / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [obj for obj in map(json.loads, lines) if "event" in obj]


def _state(out: Path, step: int | None = None) -> dict:
    checkpoints = list_complete(out / "checkpoints")
    chosen = checkpoints[-1] if step is None else next(c for c in checkpoints if c.step == step)
    return checkpoint_state(chosen)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["step"] == b["step"] and a["sampler"] == b["sampler"] and a["scheduler"] == b["scheduler"]
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # bit for bit
    moments_a, moments_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert moments_a.keys() == moments_b.keys()
    for key in moments_a:
        assert all(torch.equal(moments_a[key][name], moments_b[key][name]) for name in moments_a[key])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])


def test_a_resumed_run_is_the_uninterrupted_run(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    # eval at steps 0, 2, 4 so that evaluation on both sides of the stop is compared too
    config = write_config(
        synth_dir,
        total_steps=4,
        checkpoint=CHECKPOINTS,
        eval={"every": 2, "before_training": True, "max_samples_per_source": 1},
        reward={"workers": 1},
    )
    assert _train(config, tmp_path / "straight") == 0
    assert _train(config, tmp_path / "split", "--steps", "2") == 0
    capsys.readouterr()
    assert _train(config, tmp_path / "split", "--resume") == 0
    out = capsys.readouterr().out
    assert f"train: resumed from {tmp_path / 'split' / 'checkpoints' / 'step_00000002'} at step 2" in out
    assert "train: finished 2 step(s)" in out
    _assert_same_state(_state(tmp_path / "straight"), _state(tmp_path / "split"))
    assert _state(tmp_path / "split")["step"] == 4
    assert _points(tmp_path / "straight") == _points(tmp_path / "split")
    resumed = [e for e in _events(tmp_path / "split") if e["event"] == "resumed"]
    assert [e["step"] for e in resumed] == [2]


def test_a_run_resumed_at_an_epoch_boundary_goes_on(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    # one source of 6 training rows, 2 prompts a step: step 3 ends the first epoch exactly
    config = write_config(
        synth_dir,
        ["synth_math"],
        total_steps=5,
        checkpoint={"every": 3, "keep_last": None},
        reward={"workers": 1},
    )
    assert _train(config, tmp_path / "straight") == 0
    assert _train(config, tmp_path / "split", "--steps", "3") == 0
    sampler = _state(tmp_path / "split", 3)["sampler"]
    assert (sampler["epoch"], sampler["position"], sampler["draws"]) == (
        {"synth_math": 1},
        {"synth_math": 0},
        6,
    )
    capsys.readouterr()
    assert _train(config, tmp_path / "split", "--resume") == 0
    assert "train: finished 2 step(s)" in capsys.readouterr().out
    _assert_same_state(_state(tmp_path / "straight"), _state(tmp_path / "split"))
    assert _state(tmp_path / "split")["sampler"]["draws"] == 10


def test_checkpoints_every_n_steps_keep_the_last_k(synth_dir: Path, tmp_path: Path, write_config) -> None:
    config = write_config(
        synth_dir, total_steps=3, checkpoint={"every": 1, "keep_last": 2}, reward={"workers": 1}
    )
    assert _train(config, tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "checkpoints").iterdir()) == [
        "step_00000002",
        "step_00000003",
    ]
    saved = [e["step"] for e in _events(tmp_path / "out") if e["event"] == "checkpoint"]
    assert saved == [1, 2, 3]


def test_a_finished_run_has_nothing_to_do(synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    config = write_config(synth_dir, total_steps=1, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out") == 0
    capsys.readouterr()
    assert _train(config, tmp_path / "out", "--resume") == 0
    assert (
        capsys.readouterr().out.splitlines()[-1] == "train: nothing to do: the run already did its 1 step(s)"
    )


def test_a_partial_last_checkpoint_is_passed_over(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    config = write_config(
        synth_dir, total_steps=3, checkpoint={"every": 1, "keep_last": None}, reward={"workers": 1}
    )
    assert _train(config, tmp_path / "out", "--steps", "2") == 0
    newest = tmp_path / "out" / "checkpoints" / "step_00000002"
    (newest / MARKER).unlink()  # killed while saving step 2
    capsys.readouterr()
    assert _train(config, tmp_path / "out", "--resume") == 0
    captured = capsys.readouterr()
    assert f"resumed from {tmp_path / 'out' / 'checkpoints' / 'step_00000001'} at step 1" in captured.out
    assert "passed over a checkpoint: " in captured.out + captured.err
    assert "train: finished 2 step(s)" in captured.out


def _refusal(capsys) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_resume_without_a_checkpoint_is_refused(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    config = write_config(synth_dir, reward={"workers": 1})
    assert _train(config, tmp_path / "out", "--resume") == 2
    root = tmp_path / "out" / "checkpoints"
    assert _refusal(capsys) == [
        "train: cannot resume:",
        f"  --resume: no complete checkpoint in {root} to resume from; train without --resume, or give "
        "--resume PATH",
    ]
    assert not (tmp_path / "out" / "metrics.jsonl").exists()  # nothing was started


def test_an_unreadable_checkpoint_is_refused(synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    config = write_config(synth_dir, total_steps=1, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out") == 0
    checkpoint = tmp_path / "out" / "checkpoints" / "step_00000001"
    state = checkpoint / STATE_FILE
    state.write_bytes(state.read_bytes()[::-1])  # same size, garbage
    capsys.readouterr()
    assert _train(config, tmp_path / "out", "--resume", str(checkpoint)) == 2
    assert _refusal(capsys) == [
        "train: cannot resume:",
        f"  --resume: {checkpoint}: trainer_state.pt is corrupted (its SHA-256 differs from the manifest's)",
    ]
    assert _train(config, tmp_path / "out", "--resume", str(tmp_path / "nowhere")) == 2
    assert (
        _refusal(capsys)[-1]
        == f"  --resume: {tmp_path / 'nowhere'}: not a checkpoint directory (it does not exist)"
    )


def test_a_checkpoint_of_another_config_needs_resume_force(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    config = write_config(synth_dir, total_steps=3, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out", "--steps", "1") == 0
    capsys.readouterr()
    assert _train(config, tmp_path / "out", "--resume", "--set", "algo.lr=0.001") == 2
    root = tmp_path / "out" / "checkpoints" / "step_00000001"
    assert _refusal(capsys) == [
        "train: cannot resume:",
        f"  --resume: {root}: cannot resume: the checkpoint was saved with another config:",
        "  algo.lr: 0.0004 in the checkpoint, 0.001 now",
        "use the same config, or pass --resume-force to continue with this one",
    ]
    assert _train(config, tmp_path / "out", "--resume", "--resume-force", "--set", "algo.lr=0.001") == 0
    captured = capsys.readouterr()
    assert "resuming with another config (--resume-force): algo.lr: 0.0004 in the checkpoint, 0.001 now" in (
        captured.out + captured.err
    )
    assert "train: finished 2 step(s)" in captured.out


def test_resume_force_alone_is_refused(synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    assert _train(write_config(synth_dir), tmp_path / "out", "--resume-force") == 2
    assert _refusal(capsys) == ["train: --resume-force only applies with --resume"]


def test_a_checkpoint_of_another_model_is_refused_even_forced(
    synth_dir: Path, tmp_path: Path, write_config, capsys
) -> None:
    config = write_config(synth_dir, total_steps=3, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out", "--steps", "1") == 0
    capsys.readouterr()
    code = _train(
        config, tmp_path / "out", "--resume", "--resume-force", "--set", "model.path=tiny:qwen2_5_vl:tiny"
    )
    assert code == 2
    lines = _refusal(capsys)
    assert lines[0] == "train: cannot resume:"
    assert lines[1].startswith(
        f"  --resume: {tmp_path / 'out' / 'checkpoints' / 'step_00000001'}: cannot resume: "
        "the checkpoint holds a qwen3_vl with "
    )
    assert "; this run builds a qwen2_5_vl with " in lines[1]


def test_a_checkpoint_of_changed_data_is_refused(
    synth_dir: Path, tmp_path: Path, write_config, copy_data, capsys
) -> None:
    data = copy_data(lambda name, number, row: row)
    config = write_config(data, total_steps=3, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out", "--steps", "1") == 0
    train_file = next(data.glob("train_*_synth_math_*.parquet"))
    rows = list(iter_samples(str(train_file)))
    rows[0]["reward_model"]["ground_truth"] = "\\boxed{12345}"  # one answer corrected after the stop
    write_parquet(rows, str(train_file))
    capsys.readouterr()
    assert _train(config, tmp_path / "out", "--resume", "--resume-force") == 2
    lines = _refusal(capsys)
    checkpoint = tmp_path / "out" / "checkpoints" / "step_00000001"
    assert lines[:2] == [
        "train: cannot resume:",
        f"  --resume: {checkpoint}: cannot resume: the data changed since this checkpoint was saved, "
        "so the run would not see the samples it would have seen:",
    ]
    assert lines[2].startswith(f"  synth_math train file://{train_file}: ")
    assert lines[-1] == "restore the files, or start a new run"


def test_a_moved_copy_of_the_same_data_resumes(synth_dir: Path, tmp_path: Path, write_config, capsys) -> None:
    config = write_config(synth_dir, total_steps=2, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out", "--steps", "1") == 0
    moved = tmp_path / "moved"
    shutil.copytree(synth_dir, moved)
    assert _train(config, tmp_path / "out", "--resume", "--set", f"data.root={moved}") == 0
    assert "train: finished 1 step(s)" in capsys.readouterr().out


def test_a_nan_stop_saves_a_checkpoint_first(synth_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(
        small_config(
            synth_dir, SOURCES, algo={"max_nan_steps": 2}, reward={"workers": 1}, checkpoint=CHECKPOINTS
        )
    )
    spec = build_run_spec(config, run_id="nan")
    with open_session(config, list(spec.sources), output_dir=tmp_path / "out") as session:
        NanSwitch().install(session.state.policy.model)
        with pytest.raises(TrainingStopped) as stopped:
            run_loop(session)
    checkpoint = latest_complete(tmp_path / "out" / "checkpoints")
    assert checkpoint is not None and checkpoint.step == 2
    assert stopped.value.checkpoint == checkpoint.path
    stop = [e for e in _events(tmp_path / "out") if e["event"] == "stopped"]
    assert stop[0]["data"] == {"checkpoint": str(checkpoint.path)}


def test_the_policy_export_loads_back_and_generates(synth_dir: Path, tmp_path: Path, write_config) -> None:
    from transformers import AutoModelForImageTextToText

    from trainer.models import load_model
    from trainer.rollout import RolloutPrompt, build_backend

    config = write_config(synth_dir, total_steps=1, checkpoint=CHECKPOINTS, reward={"workers": 1})
    assert _train(config, tmp_path / "out") == 0
    checkpoint = latest_complete(tmp_path / "out" / "checkpoints")
    assert checkpoint is not None and checkpoint.policy_dir is not None
    assert "model" not in load_state(checkpoint)  # the weights are stored once, in policy/
    plain = AutoModelForImageTextToText.from_pretrained(checkpoint.policy_dir)
    saved = checkpoint_state(checkpoint)["model"]
    assert plain.num_parameters() == sum(v.numel() for v in saved.values())
    model, processor = load_model(checkpoint.policy_dir)
    image = __import__("PIL.Image").Image.new("RGB", (56, 56), (200, 30, 30))
    rollouts = build_backend("hf", model=model, processor=processor).generate(
        [RolloutPrompt([{"role": "user", "content": "<image>What is shown?"}], [image])],
        n=2,
        max_new_tokens=5,
        seed=0,
    )
    assert len(rollouts) == 2 and all(1 <= r.response_length <= 5 for r in rollouts)

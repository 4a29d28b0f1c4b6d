"""``python -m trainer sft``: a warm-start that lowers the loss and writes a model GRPO can start from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from trainer.__main__ import main
from trainer.config import build_run_spec, config_from_dict
from trainer.config.loader import read_config_data
from trainer.data.synth import generate_dataset
from trainer.models import load_model
from trainer.rollout import RolloutPrompt, build_backend
from trainer.sft import SFTOptions, run_sft

SOURCES = ("synth_math", "synth_detection")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sft-synth")
    generate_dataset(str(out), tasks=["math", "detection"], per_source=4, image_size=56, test_fraction=0.25)
    return out


def _config_data(root: Path) -> dict:
    data = read_config_data("tiny-cpu-demo")
    data["data"]["root"] = str(root)
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] in SOURCES]
    data["rollout"].update(prompts_per_step=2, n=2, max_response_length=12)
    data["eval"].update(every=0, before_training=False)
    data["reward"]["workers"] = 1
    data["total_steps"] = 2
    return data


@pytest.fixture
def config_file(data_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(_config_data(data_dir)), encoding="utf-8")
    return path


def test_the_loss_goes_down(data_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(_config_data(data_dir))
    sources = list(build_run_spec(config, run_id="sft").sources)
    torch.manual_seed(0)
    summary = run_sft(
        config,
        sources,
        SFTOptions(steps=8, batch_size=4, lr=3e-3, warmup_steps=0, log_every=0),
        out_dir=tmp_path / "m",
    )
    assert summary.steps == 8 and summary.samples == 32 and len(summary.losses) == 8
    assert summary.losses[-1] < 0.8 * summary.losses[0]
    record = json.loads((tmp_path / "m" / "sft_summary.json").read_text())
    assert record["options"]["steps"] == 8 and record["summary"]["losses"] == summary.losses


def test_packed_rows_give_the_warm_start_the_same_losses(data_dir: Path, tmp_path: Path) -> None:
    runs = []
    for remove_padding in (False, True):
        data = _config_data(data_dir)
        data["algo"]["remove_padding"] = remove_padding
        config = config_from_dict(data)
        sources = list(build_run_spec(config, run_id="sft").sources)
        torch.manual_seed(0)
        options = SFTOptions(steps=4, batch_size=4, lr=3e-3, warmup_steps=0, log_every=0)
        runs.append(run_sft(config, sources, options, out_dir=tmp_path / f"m{int(remove_padding)}").losses)
    assert runs[1] == pytest.approx(runs[0], rel=1e-4)
    assert runs[0][-1] != runs[0][0]  # the weights moved between steps, so equal later losses mean something


def test_the_command_writes_a_model_that_generates_and_trains(
    config_file: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "warm"
    code = main(["sft", "--config", str(config_file), "--out", str(out), "--steps", "2", "--batch-size", "2"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert f"model in {out}" in stdout.splitlines()[-1]
    model, processor = load_model(out)
    assert model.config.model_type == "qwen3_vl"
    backend = build_backend("hf", model=model, processor=processor)
    rollouts = backend.generate(
        [RolloutPrompt([{"role": "user", "content": "What is 1 + 1?"}])], n=1, max_new_tokens=4, greedy=True
    )
    assert rollouts[0].response_length >= 1
    code = main(
        [
            "train",
            "--config",
            str(config_file),
            "--set",
            f"model.path={out}",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    assert code == 0
    assert "train: finished 2 step(s)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", " "], "sft: --out must not be empty"),
        (["--out", "x", "--set", "algo.lr=-1"], "algo.lr: must be > 0, got -1"),
    ],
)
def test_bad_arguments_exit_2(config_file: Path, args: list[str], message: str, capsys) -> None:
    assert main(["sft", "--config", str(config_file), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--steps", "0"),
        ("--batch-size", "-3"),
        ("--lr", "0"),
        ("--lr", "inf"),
        ("--lr", "fast"),
        ("--warmup-steps", "-1"),
    ],
)
def test_bad_numbers_are_refused_by_the_parser(config_file: Path, flag: str, value: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sft", "--config", str(config_file), "--out", "x", flag, value])
    assert exit_info.value.code == 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be a positive integer, got 0"),
        ({"batch_size": True}, "batch_size must be a positive integer, got True"),
        ({"lr": float("nan")}, "lr must be a finite number > 0, got nan"),
        ({"warmup_steps": -1}, "warmup_steps must be an integer >= 0, got -1"),
    ],
)
def test_options_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{message}$"):
        SFTOptions(**kwargs)

"""A run's own warm-start (``warm_start.steps``): made once, reused on resume, redone if changed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from trainer.__main__ import main
from trainer.config import ConfigError, build_run_spec, config_from_dict
from trainer.config.loader import read_config_data
from trainer.data.synth import generate_dataset
from trainer.sft.warm_start import WARM_START_DIR, warm_start_options, warm_started

SOURCES = ("synth_counting", "synth_detection")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("warm-synth")
    generate_dataset(
        str(out), tasks=["counting", "detection"], per_source=4, image_size=56, test_fraction=0.25
    )
    return out


def _config_data(root: Path, out: Path, **warm_start: object) -> dict:
    data = read_config_data("tiny-cpu-demo")
    data["data"]["root"] = str(root)
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] in SOURCES]
    data["rollout"].update(prompts_per_step=2, n=2, max_response_length=12)
    data["eval"].update(every=0, before_training=False)
    data["checkpoint"].update(every=0)
    data["reward"]["workers"] = 1
    data["total_steps"] = 2
    data["output_dir"] = str(out)
    data["warm_start"] = {"steps": 3, "batch_size": 2, "lr": 1e-3} | warm_start
    return data


def _warm(data: dict) -> tuple[str, list[str]]:
    config = config_from_dict(data)
    lines: list[str] = []
    warmed = warm_started(config, list(build_run_spec(config, run_id="w").sources), log=lines.append)
    return warmed.model.path, lines


def test_no_steps_leaves_the_config_as_it_is(data_dir: Path, tmp_path: Path) -> None:
    config = config_from_dict(_config_data(data_dir, tmp_path / "run", steps=0))
    assert warm_started(config, [], log=pytest.fail) is config
    assert not (tmp_path / "run").exists()


def test_made_once_then_reused_and_redone_when_its_options_change(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    path, lines = _warm(_config_data(data_dir, out))
    assert path == str(out / WARM_START_DIR)
    assert (out / WARM_START_DIR / "config.json").is_file()
    record = json.loads((out / WARM_START_DIR / "sft_summary.json").read_text())
    assert record["summary"]["steps"] == 3
    assert record["warm_start"] == {
        "base_model": "tiny:qwen3_vl:tiny",
        "steps": 3,
        "batch_size": 2,
        "lr": 1e-3,
        "seed": 0,
    }
    assert any("3 supervised step(s) of 2 sample(s)" in line for line in lines), lines
    weights = (out / WARM_START_DIR / "model.safetensors").stat().st_mtime_ns

    path, lines = _warm(_config_data(data_dir, out))  # a resume of the same run
    assert path == str(out / WARM_START_DIR)
    assert lines == [f"train: warm-start: reusing {out / WARM_START_DIR}"]
    assert (out / WARM_START_DIR / "model.safetensors").stat().st_mtime_ns == weights

    _, lines = _warm(_config_data(data_dir, out, steps=4))
    assert any("4 supervised step(s)" in line for line in lines), lines
    assert json.loads((out / WARM_START_DIR / "sft_summary.json").read_text())["summary"]["steps"] == 4


def test_a_directory_without_its_record_is_not_taken_for_finished(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    (out / WARM_START_DIR).mkdir(parents=True)
    (out / WARM_START_DIR / "sft_summary.json").write_text("{not json")
    _, lines = _warm(_config_data(data_dir, out))
    assert any("supervised step(s)" in line for line in lines), lines
    assert (out / WARM_START_DIR / "config.json").is_file()


def test_options_of_the_section() -> None:
    data = _config_data(Path("/nonexistent"), Path("/tmp/x"), steps=250, batch_size=8, lr=5e-3)
    options = warm_start_options(config_from_dict(data))
    assert (options.steps, options.batch_size, options.lr, options.warmup_steps, options.log_every) == (
        250,
        8,
        5e-3,
        10,
        25,
    )
    assert options.target_accuracy is None
    data["warm_start"] |= {"target_accuracy": 0.55, "eval_every": 100, "eval_rows": 32}
    options = warm_start_options(config_from_dict(data))
    assert (options.target_accuracy, options.eval_every, options.eval_rows) == (0.55, 100, 32)


def test_a_target_accuracy_is_part_of_the_record_a_resume_must_match(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _warm(_config_data(data_dir, out))
    _, lines = _warm(_config_data(data_dir, out, target_accuracy=0.5, eval_every=2))
    assert any("supervised step(s)" in line for line in lines), lines  # made again, not reused
    record = json.loads((out / WARM_START_DIR / "sft_summary.json").read_text())
    assert record["warm_start"]["target_accuracy"] == 0.5 and record["warm_start"]["eval_every"] == 2
    _, lines = _warm(_config_data(data_dir, out, target_accuracy=0.5, eval_every=2))
    assert lines == [f"train: warm-start: reusing {out / WARM_START_DIR}"]


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"steps": -1}, "warm_start.steps"),
        ({"steps": "ten"}, "warm_start.steps"),
        ({"lr": 0}, "warm_start.lr"),
        ({"batch_size": 0}, "warm_start.batch_size"),
        ({"epochs": 2}, "warm_start.epochs"),
        ({"target_accuracy": 0}, "warm_start.target_accuracy"),
        ({"target_accuracy": 1.2}, "warm_start.target_accuracy"),
        ({"target_accuracy": "most"}, "warm_start.target_accuracy"),
        ({"eval_every": 0}, "warm_start.eval_every"),
        ({"eval_rows": 0}, "warm_start.eval_rows"),
    ],
)
def test_bad_values_are_refused_naming_the_field(values: dict, field: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict(_config_data(Path("/nonexistent"), Path("/tmp/x"), **values))
    assert any(problem.field == field for problem in caught.value.problems), caught.value.problems


def test_the_train_command_warm_starts_then_runs_grpo(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(_config_data(data_dir, out)), encoding="utf-8")
    assert main(["train", "--config", str(config), "--threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.index("train: warm-start: done") < printed.index("train: finished 2 step(s)")
    written = yaml.safe_load((out / "config.yaml").read_text())
    assert written["model"]["path"] == str(out / WARM_START_DIR)

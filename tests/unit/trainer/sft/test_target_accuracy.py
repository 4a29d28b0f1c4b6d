"""A warm-start with a target accuracy: dev rows held out, sources dropped once they reach it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from trainer.config import build_run_spec, config_from_dict
from trainer.config.loader import read_config_data
from trainer.data.mixture import MixtureSampler
from trainer.data.synth import generate_dataset
from trainer.sft import SFTOptions, run_sft
from trainer.sft import train as sft_train

SOURCES = ("synth_math", "synth_detection")
PER_SOURCE = 16  # 12 training rows a source: 3 held out as dev rows (a quarter)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sft-target-synth")
    generate_dataset(
        str(out), tasks=["math", "detection"], per_source=PER_SOURCE, image_size=56, test_fraction=0.25
    )
    return out


def _config(root: Path):
    data = read_config_data("tiny-cpu-demo")
    data["data"]["root"] = str(root)
    data["data"]["sources"] = [s for s in data["data"]["sources"] if s["name"] in SOURCES]
    data["rollout"].update(prompts_per_step=2, n=2, max_response_length=8)
    data["reward"]["workers"] = 1
    data["total_steps"] = 2
    config = config_from_dict(data)
    return config, list(build_run_spec(config, run_id="sft").sources)


class RecordingSampler(MixtureSampler):
    """A mixture sampler that remembers every (source, index) it drew, over all its instances."""

    drawn: list[tuple[str, int]] = []

    def __next__(self) -> tuple[str, int]:
        pair = super().__next__()
        RecordingSampler.drawn.append(pair)
        return pair


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    RecordingSampler.drawn = []
    monkeypatch.setattr(sft_train, "MixtureSampler", RecordingSampler)
    return RecordingSampler.drawn


def _options(**kwargs) -> SFTOptions:
    return SFTOptions(**{"steps": 6, "batch_size": 4, "lr": 3e-3, "warmup_steps": 0, "log_every": 0} | kwargs)


def test_a_source_that_reaches_the_target_is_no_longer_trained(
    data_dir: Path, tmp_path: Path, recorded: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, sources = _config(data_dir)
    asked: list[tuple[str, ...]] = []

    def fake_accuracy(model, processor, items, config, pool):
        asked.append(tuple(items))
        assert all(len(prompts) == 3 for prompts in items.values())  # a quarter of 12 training rows
        return {name: (0.75 if name == "synth_math" else 0.25) for name in items}

    monkeypatch.setattr(sft_train, "dev_accuracy", fake_accuracy)
    torch.manual_seed(0)
    summary = run_sft(config, sources, _options(target_accuracy=0.5, eval_every=2), out_dir=tmp_path / "m")
    assert summary.steps == 6
    assert summary.reached == {"synth_math": 2}
    # evaluated at steps 2 and 4 (not at the last step); math only the first time
    assert asked == [("synth_math", "synth_detection"), ("synth_detection",)]
    assert [e["step"] for e in summary.evaluations] == [2, 4]
    first_two_steps, later = recorded[:8], recorded[8:]
    assert {name for name, _ in first_two_steps} <= set(SOURCES)
    assert later and {name for name, _ in later} == {"synth_detection"}
    # the dev rows (the last 3 of each training split) are never drawn for training
    assert max(index for _, index in recorded) < 12 - 3
    record = json.loads((tmp_path / "m" / "sft_summary.json").read_text())
    assert record["summary"]["reached"] == {"synth_math": 2}
    assert record["options"]["target_accuracy"] == 0.5


def test_the_warm_start_stops_when_every_source_reached_the_target(
    data_dir: Path, tmp_path: Path, recorded: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, sources = _config(data_dir)
    monkeypatch.setattr(
        sft_train, "dev_accuracy", lambda model, processor, items, config, pool: dict.fromkeys(items, 1.0)
    )
    summary = run_sft(config, sources, _options(target_accuracy=0.9, eval_every=2), out_dir=tmp_path / "m")
    assert summary.steps == 2 and len(summary.losses) == 2
    assert summary.reached == {"synth_math": 2, "synth_detection": 2}
    assert (tmp_path / "m" / "config.json").is_file()  # the model is written all the same


def test_without_a_target_every_training_row_is_drawn_and_nothing_is_evaluated(
    data_dir: Path, tmp_path: Path, recorded: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, sources = _config(data_dir)

    def refuse(*args, **kwargs):
        raise AssertionError("no dev evaluation without a target")

    monkeypatch.setattr(sft_train, "dev_accuracy", refuse)
    summary = run_sft(config, sources, _options(steps=12, batch_size=8), out_dir=tmp_path / "m")
    assert summary.evaluations == [] and summary.reached == {}
    assert max(index for _, index in recorded) >= 12 - 3  # the rows a target would hold out are drawn


def test_the_real_dev_accuracy_scores_greedy_answers_per_source(data_dir: Path, tmp_path: Path) -> None:
    config, sources = _config(data_dir)
    torch.manual_seed(0)
    summary = run_sft(
        config, sources, _options(steps=3, target_accuracy=1.0, eval_every=2), out_dir=tmp_path / "m"
    )
    (evaluation,) = summary.evaluations
    assert evaluation["step"] == 2
    assert set(evaluation["accuracy"]) == set(SOURCES)
    # a multiple of 1/3 in [0, 1]: three dev rows a source, each right or wrong
    for value in evaluation["accuracy"].values():
        assert 0.0 <= value <= 1.0 and abs(value * 3 - round(value * 3)) < 1e-9


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target_accuracy": 0}, "target_accuracy must be a number in \\(0, 1\\] or None, got 0"),
        ({"target_accuracy": 1.5}, "target_accuracy must be a number in \\(0, 1\\] or None, got 1.5"),
        ({"target_accuracy": True}, "target_accuracy must be a number in \\(0, 1\\] or None, got True"),
        ({"target_accuracy": "0.5"}, "target_accuracy must be a number in \\(0, 1\\] or None, got '0.5'"),
        ({"eval_every": 0}, "eval_every must be a positive integer, got 0"),
        ({"eval_rows": -1}, "eval_rows must be a positive integer, got -1"),
    ],
)
def test_target_options_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SFTOptions(**kwargs)

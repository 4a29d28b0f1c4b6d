"""Fingerprints of config, data files and model, and the lines that say what changed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from torch import nn

from trainer.checkpoint import (
    DataFingerprinter,
    config_defaults,
    config_differences,
    config_identity,
    data_differences,
    model_differences,
    model_signature,
)
from trainer.config import ResolvedSource, load_config


def _config(*overrides: str):
    return load_config("tiny-cpu-demo", list(overrides))


@pytest.mark.parametrize(
    "override",
    [
        "output_dir=elsewhere",
        "checkpoint.every=3",
        "checkpoint.keep_last=9",
        "tracking.console=false",
        "eval.every=2",
        "data.root=/mnt/copy",
    ],
)
def test_what_does_not_change_a_step_is_ignored(override: str) -> None:
    assert config_identity(_config(override)) == config_identity(_config())


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("algo.lr=0.001", "algo.lr: 0.0004 in the checkpoint, 0.001 now"),
        ("seed=3", "seed: 0 in the checkpoint, 3 now"),
        ("total_steps=60", "total_steps: 150 in the checkpoint, 60 now"),
        (
            "model.path=tiny:qwen2_5_vl:tiny",
            'model.path: "tiny:qwen3_vl:tiny" in the checkpoint, "tiny:qwen2_5_vl:tiny" now',
        ),
        ("data.sources.1.weight=2.0", "data.sources[1].weight: 6.0 in the checkpoint, 2.0 now"),
        ("model.freeze=[vit]", 'model.freeze: [] in the checkpoint, ["vit"] now'),
    ],
)
def test_each_changed_field_is_named(override: str, line: str) -> None:
    assert config_differences(config_identity(_config()), config_identity(_config(override))) == [line]


def test_an_added_key_is_named() -> None:
    assert config_differences({"a": 1}, {"a": 1, "b": {"c": 2}}) == [
        'b.c: "<absent>" in the checkpoint, 2 now'
    ]


def _without_dynamic_sampling(identity: dict) -> dict:
    """The identity as a checkpoint saved before algo.dynamic_sampling existed holds it."""
    return {**identity, "algo": {k: v for k, v in identity["algo"].items() if k != "dynamic_sampling"}}


def test_a_field_added_since_the_checkpoint_counts_as_its_default() -> None:
    old = _without_dynamic_sampling(config_identity(_config()))
    assert config_differences(old, config_identity(_config()), config_defaults()) == []
    assert config_differences(
        old, config_identity(_config("algo.dynamic_sampling.enabled=true")), config_defaults()
    ) == ["algo.dynamic_sampling.enabled: false in the checkpoint, true now"]


def test_config_defaults_are_the_schemas() -> None:
    defaults = config_defaults()
    assert defaults["algo.dynamic_sampling.max_retries"] == 2
    assert defaults["model.freeze"] == ["vit", "connector"]
    assert defaults["reward.remote"] is None
    assert "total_steps" not in defaults and "model.path" not in defaults  # required: no default


def _files(tmp_path: Path) -> tuple[Path, Path]:
    train, test = tmp_path / "train.parquet", tmp_path / "test.parquet"
    train.write_bytes(b"0123456789" * 100)
    test.write_bytes(b"abc")
    return train, test


def _source(train: Path, test: Path, name: str = "s", weight: float = 1.0) -> ResolvedSource:
    return ResolvedSource(name=name, weight=weight, train=[str(train)], test=[str(test)])


class CountingHasher:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.fingerprinter = DataFingerprinter(self)

    def __call__(self, uri: str) -> str:
        from trainer.checkpoint.fingerprint import file_sha256

        self.calls.append(uri)
        return file_sha256(uri)


def test_unchanged_data_has_no_differences_and_is_hashed_once(tmp_path: Path) -> None:
    train, test = _files(tmp_path)
    hasher = CountingHasher()
    saved = hasher.fingerprinter.fingerprint([_source(train, test)])
    again = hasher.fingerprinter.fingerprint([_source(train, test)])
    assert saved == again and hasher.calls == [str(train), str(test)]
    assert saved[0]["train"][0]["size"] == 1000
    assert data_differences(saved, [_source(train, test)], hasher=hasher) == []
    assert len(hasher.calls) == 2  # same size and mtime: not read again


def test_a_touched_or_moved_file_with_the_same_bytes_resumes(tmp_path: Path) -> None:
    train, test = _files(tmp_path)
    saved = DataFingerprinter().fingerprint([_source(train, test)])
    stat = train.stat()
    os.utime(train, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    moved = tmp_path / "copy"
    moved.mkdir()
    shutil.copy(test, moved / "test.parquet")
    assert data_differences(saved, [_source(train, moved / "test.parquet")]) == []


@pytest.mark.parametrize(
    ("edit", "line"),
    [
        ("append", "s train {train}: 1000 bytes in the checkpoint, 1001 now"),
        ("rewrite", "s train {train}: same size but different content (SHA-256) than in the checkpoint"),
        ("delete", "s train {train}: cannot be read"),
    ],
)
def test_changed_files_are_named(tmp_path: Path, edit: str, line: str) -> None:
    train, test = _files(tmp_path)
    saved = DataFingerprinter().fingerprint([_source(train, test)])
    if edit == "append":
        train.write_bytes(train.read_bytes() + b"x")
    elif edit == "rewrite":
        train.write_bytes(b"9876543210" * 100)
    else:
        train.unlink()
    lines = data_differences(saved, [_source(train, test)])
    assert len(lines) == 1 and lines[0].startswith(line.format(train=train))


def test_other_sources_weights_and_file_lists_are_named(tmp_path: Path) -> None:
    train, test = _files(tmp_path)
    saved = DataFingerprinter().fingerprint([_source(train, test)])
    assert data_differences(saved, [_source(train, test, name="t")]) == [
        "sources ['s'] in the checkpoint, ['t'] now"
    ]
    assert data_differences(saved, [_source(train, test, weight=2.0)]) == [
        "s weight: 1.0 in the checkpoint, 2.0 now"
    ]
    two = ResolvedSource(name="s", weight=1.0, train=[str(train), str(test)], test=[str(test)])
    assert data_differences(saved, [two]) == [
        "s train: 1 file(s) in the checkpoint (train.parquet), 2 now (train.parquet, test.parquet)"
    ]


class Tiny(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.layer = nn.Linear(width, 2)


def test_model_signature_tells_models_apart() -> None:
    assert model_differences(model_signature(Tiny(3)), model_signature(Tiny(3))) == []
    assert model_differences(model_signature(Tiny(3)), model_signature(Tiny(4))) == [
        # 3*2 + 2 = 8 and 4*2 + 2 = 10 parameters, in 2 tensors each
        "the checkpoint holds a Tiny with 8 parameters in 2 tensors; "
        "this run builds a Tiny with 10 parameters in 2 tensors"
    ]

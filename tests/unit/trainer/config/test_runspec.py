"""Run specs: resolving data files, JSON round trip through fsspec, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import fsspec
import pytest

from trainer.config import (
    ConfigError,
    RunSpec,
    apply_overrides,
    build_run_spec,
    config_from_dict,
    load_config,
    load_run_spec,
    resolve_uris,
    run_spec_from_json,
)


def messages(exc: ConfigError) -> list[str]:
    return [str(p) for p in exc.problems]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    root = tmp_path / "synth"
    root.mkdir()
    for name in (
        "train_math_synth_math_8.parquet",
        "test_math_synth_math_2.parquet",
        "train_detection_synth_detection_8.parquet",
        "train_detection_synth_detection_9.parquet",
    ):
        (root / name).write_bytes(b"x")
    return root


def config_for(root: Path, *overrides: str):
    data = {
        "model": {"path": "tiny:qwen2_vl:tiny"},
        "data": {
            "root": str(root),
            "sources": [
                {
                    "name": "synth_math",
                    "train": ["train_*_synth_math_*.parquet"],
                    "test": ["test_*_synth_math_*.parquet"],
                },
                {"name": "synth_detection", "train": ["train_*_synth_detection_*.parquet"], "weight": 2.0},
            ],
        },
        "total_steps": 5,
    }
    return config_from_dict(apply_overrides(data, overrides))


def test_build_resolves_globs_to_sorted_absolute_uris(data_dir: Path) -> None:
    spec = build_run_spec(config_for(data_dir), run_id="run-1")
    math, detection = spec.sources
    assert math.train == [f"file://{data_dir}/train_math_synth_math_8.parquet"]
    assert math.test == [f"file://{data_dir}/test_math_synth_math_2.parquet"]
    assert detection.train == [
        f"file://{data_dir}/train_detection_synth_detection_8.parquet",
        f"file://{data_dir}/train_detection_synth_detection_9.parquet",
    ]
    assert (detection.weight, detection.test) == (2.0, [])
    assert spec.config.tracking.http is None


def test_round_trip_through_a_file_and_memory(data_dir: Path, tmp_path: Path) -> None:
    spec = build_run_spec(
        config_for(data_dir, "reward.iou_schedule=[[0.5, 0.9], [1, 0.95]]"),
        run_id="run-1",
        platform_url="http://127.0.0.1:8000",
    )
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json(), encoding="utf-8")
    assert load_run_spec(str(path)) == spec
    assert load_run_spec(f"file://{path}") == spec
    with fsspec.open("memory://specs/run-1.json", "w") as handle:
        handle.write(spec.to_json())
    again = load_run_spec("memory://specs/run-1.json")
    assert again == spec
    assert again.config.reward.iou_schedule == [(0.5, 0.9), (1.0, 0.95)]


def test_platform_url_turns_on_http_tracking_for_the_run(data_dir: Path) -> None:
    spec = build_run_spec(
        config_for(
            data_dir, "tracking.http.url=http://old", "tracking.http.run_id=old", "tracking.http.batch_size=7"
        ),
        run_id="run-9",
        platform_url="https://triune.example",
    )
    http = spec.config.tracking.http
    assert http is not None
    assert (http.url, http.run_id, http.batch_size) == ("https://triune.example", "run-9", 7)
    # the token itself never travels in the spec, only the name of the variable that holds it
    assert sorted(json.loads(spec.to_json())["config"]["tracking"]["http"]) == [
        "batch_size",
        "close_wait_s",
        "retry_interval_s",
        "run_id",
        "spool",
        "timeout_s",
        "token_env",
        "url",
    ]


def test_every_missing_file_is_reported_at_once(tmp_path: Path) -> None:
    config = config_for(tmp_path, "data.sources.0.test=[nothing.parquet]")
    with pytest.raises(ConfigError) as info:
        build_run_spec(config, run_id="r")
    assert messages(info.value) == [
        f"data.sources[0].train[0]: no file matches '{tmp_path}/train_*_synth_math_*.parquet'",
        f"data.sources[0].test[0]: file not found: '{tmp_path}/nothing.parquet'",
        f"data.sources[1].train[0]: no file matches '{tmp_path}/train_*_synth_detection_*.parquet'",
    ]


def test_model_checkpoint_is_checked(data_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        build_run_spec(config_for(data_dir, f"model.path={tmp_path}/nope"), run_id="r")
    assert messages(info.value) == [
        f"model.path: '{tmp_path}/nope' is not a checkpoint directory (no config.json); give a local "
        "Hugging Face checkpoint, a URI of one (s3://bucket/models/name), or tiny:<arch>:<size>"
    ]
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    assert build_run_spec(
        config_for(data_dir, f"model.path={checkpoint}"), run_id="r"
    ).config.model.path == str(checkpoint)


def test_paper_presets_need_their_placeholders_replaced() -> None:
    with pytest.raises(ConfigError) as info:
        build_run_spec(load_config("vtriune-7b"), run_id="r")
    assert messages(info.value) == [
        "model.path: '<path/to/Qwen2.5-VL-7B-Instruct>' is a placeholder; override it with "
        "model.path=/path/to/checkpoint",
        "data.root: '<path/to/Orsta-Data-47k>' is a placeholder; override it with data.root=/path/to/data",
    ]


def test_resolve_uris_keeps_absolute_and_uri_names(data_dir: Path) -> None:
    uris, problems = resolve_uris(
        [f"{data_dir}/test_math_synth_math_2.parquet", f"file://{data_dir}/train_math_*.parquet"],
        "f",
        root="/elsewhere",
    )
    assert problems == []
    assert uris == [
        f"file://{data_dir}/test_math_synth_math_2.parquet",
        f"file://{data_dir}/train_math_synth_math_8.parquet",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "{",
            "is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
        ),
        ("[1]", "must be a JSON object, got list"),
        ('{"version": 2}', "version: must be 1, got 2"),
    ],
)
def test_bad_spec_json(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        run_spec_from_json(text, "spec.json")
    assert messages(info.value)[0] == message


def test_spec_sources_must_match_the_config(data_dir: Path) -> None:
    spec = build_run_spec(config_for(data_dir), run_id="run-1", platform_url="http://h")
    data = json.loads(spec.to_json())
    data["sources"] = data["sources"][:1]
    data["config"]["tracking"]["http"]["run_id"] = "other"
    with pytest.raises(ConfigError) as info:
        run_spec_from_json(json.dumps(data))
    assert messages(info.value) == [
        "sources: names ['synth_math'] must equal config.data.sources names "
        "['synth_math', 'synth_detection'], in order"
    ]
    data = json.loads(spec.to_json())
    data["config"]["tracking"]["http"]["run_id"] = "other"
    with pytest.raises(ConfigError) as info:
        run_spec_from_json(json.dumps(data))
    assert messages(info.value) == ["config.tracking.http.run_id: must equal run_id ('run-1'), got 'other'"]


def test_spec_errors_use_dotted_paths_into_the_config(data_dir: Path) -> None:
    data = json.loads(build_run_spec(config_for(data_dir), run_id="run-1").to_json())
    data["config"]["rollout"]["n"] = 1
    data["config"]["algo"]["lr"] = float("nan")
    with pytest.raises(ConfigError) as info:
        run_spec_from_json(json.dumps(data))  # json.dumps writes NaN; the spec refuses it
    assert messages(info.value) == [
        "config.algo.lr: must be a finite number, got nan (float)",
    ]


def test_missing_spec() -> None:
    with pytest.raises(ConfigError) as info:
        load_run_spec("memory://no/such/spec.json")
    assert str(info.value) == "invalid config memory://no/such/spec.json:\n  run spec not found"


def test_run_spec_schema_is_json_serialisable() -> None:
    json.dumps(RunSpec.model_json_schema())

"""YAML loading, presets and dotted overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from trainer.config import (
    PRESETS_DIR,
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_yaml,
    known_presets,
    load_config,
    parse_override,
)
from trainer.config.loader import MAX_CONFIG_BYTES, parse_yaml

MINIMAL = """\
model: {path: "tiny:qwen2_vl:tiny"}
data:
  sources:
    - {name: a, train: [a.parquet]}
total_steps: 10
"""


def write(tmp_path: Path, text: str | bytes, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def messages(exc: ConfigError) -> list[str]:
    return [str(p) for p in exc.problems]


# -- presets -------------------------------------------------------------------------------------


def test_the_three_presets_are_shipped() -> None:
    assert known_presets() == ["tiny-cpu-demo", "vtriune-32b", "vtriune-7b"]
    assert PRESETS_DIR.name == "presets"


@pytest.mark.parametrize("name", ["vtriune-7b", "vtriune-32b"])
def test_vtriune_presets_carry_the_papers_hyper_parameters(name: str) -> None:
    config = load_config(name)
    assert config.rollout.n == 8
    assert config.rollout.prompts_per_step == 1024
    assert config.rollout.max_response_length == 2048
    assert config.rollout.temperature == 1.0
    assert config.algo.lr == 1e-6
    assert (config.algo.clip_low, config.algo.clip_high) == (0.2, 0.28)
    assert config.algo.kl.kind is None and config.algo.kl.coef == 0.0
    assert config.model.freeze == ["vit", "connector"]
    assert config.reward.iou_schedule == "dynamic"
    assert config.prompts_per_update == 1024  # on-policy: one update per rollout batch
    size = name.removeprefix("vtriune-").upper()
    assert config.model.path == f"<path/to/Qwen2.5-VL-{size}-Instruct>"
    assert len(config.data.sources) == 8


def test_tiny_cpu_demo_fits_a_small_cpu() -> None:
    config = load_config("tiny-cpu-demo")
    assert config.model.is_tiny
    assert config.rollout.backend == "hf"
    assert 4 <= config.rollout.n <= 8
    assert config.rollout.prompts_per_step <= 16
    assert 48 <= config.rollout.max_response_length <= 64
    assert config.model.max_pixels <= 224 * 224
    assert config.data.root == "var/synth"
    assert {s.name for s in config.data.sources} == {
        f"synth_{task}"
        for task in ("math", "puzzle", "science", "chart", "ocr", "counting", "detection", "grounding")
    }


@pytest.mark.parametrize("name", ["tiny-cpu-demo", "vtriune-7b", "vtriune-32b"])
def test_every_preset_keeps_dynamic_sampling_off(name: str) -> None:
    sampling = load_config(name).algo.dynamic_sampling
    assert (sampling.enabled, sampling.max_retries) == (False, 2)


def test_preset_by_file_path_equals_preset_by_name() -> None:
    assert load_config(PRESETS_DIR / "tiny-cpu-demo.yaml") == load_config("tiny-cpu-demo")


# -- overrides -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parts", "value"),
    [
        ("algo.lr=1e-5", ["algo", "lr"], 1e-5),  # YAML 1.1 would read 1e-5 as a string
        ("rollout.n=16", ["rollout", "n"], 16),
        ("algo.kl.kind=null", ["algo", "kl", "kind"], None),
        ("algo.kl.kind=", ["algo", "kl", "kind"], None),
        ("model.freeze=[vit]", ["model", "freeze"], ["vit"]),
        ("data.sources.0.weight=2.5", ["data", "sources", 0, "weight"], 2.5),
        ("model.path=tiny:qwen2_vl:tiny", ["model", "path"], "tiny:qwen2_vl:tiny"),
        ("output_dir=a=b", ["output_dir"], "a=b"),  # only the first '=' splits
        ("eval.before_training=no", ["eval", "before_training"], "no"),  # YAML 1.2: not a bool
        ("seed=010", ["seed"], 10.0),  # not octal
    ],
)
def test_parse_override(text: str, parts: list[str | int], value: object) -> None:
    assert parse_override(text) == (parts, value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("algo.lr", "override 'algo.lr' must look like key=value"),
        ("=3", "override '=3' must look like key=value"),
        ("algo..lr=1", "override 'algo..lr=1' has an empty key segment"),
    ],
)
def test_bad_override_syntax(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert messages(info.value) == [message]


def test_overrides_apply_in_order_and_leave_the_input_alone() -> None:
    data = {"algo": {"lr": 1.0}, "data": {"sources": [{"name": "a"}]}}
    out = apply_overrides(
        data, ["algo.lr=2", "algo.lr=3", "tracking.http.url=http://h", "data.sources.0.name=b"]
    )
    assert out == {
        "algo": {"lr": 3},
        "data": {"sources": [{"name": "b"}]},
        "tracking": {"http": {"url": "http://h"}},
    }
    assert data == {"algo": {"lr": 1.0}, "data": {"sources": [{"name": "a"}]}}


def test_override_fills_a_null_section() -> None:
    assert apply_overrides({"tracking": {"http": None}}, ["tracking.http.run_id=r"]) == {
        "tracking": {"http": {"run_id": "r"}}
    }


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algo.lr.x=1", "algo.lr: is not a section, cannot set keys in it"),
        ("data.sources.3.weight=1", "data.sources[3]: no such list item to override"),
        ("data.sources.5=1", "data.sources[5]: no such list item to override"),
        ("algo.lr.0=1", "algo.lr[0]: no such list item to override"),
    ],
)
def test_override_into_something_that_is_not_there(override: str, message: str) -> None:
    data = {"algo": {"lr": 1.0}, "data": {"sources": [{"name": "a"}]}}
    with pytest.raises(ConfigError) as info:
        apply_overrides(data, [override])
    assert messages(info.value) == [message]


def test_load_config_with_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    config = load_config(path, ["algo.lr=1e-5", "rollout.n=4"])
    assert (config.algo.lr, config.rollout.n) == (1e-5, 4)


def test_an_override_error_names_the_overrides(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(ConfigError) as info:
        load_config(path, ["rollout.n=1"])
    assert info.value.origin == f"{path} with overrides rollout.n=1"
    assert messages(info.value)[0].startswith("rollout.n: GRPO needs at least 2 responses per prompt")


# -- files and YAML ------------------------------------------------------------------------------


def test_missing_file_lists_the_presets() -> None:
    with pytest.raises(ConfigError) as info:
        load_config("no/such/file.yaml")
    assert messages(info.value) == [
        "no such file or preset: 'no/such/file.yaml'; give a YAML file path or one of the presets: "
        "tiny-cpu-demo, vtriune-32b, vtriune-7b"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("algo: {lr: 1\n", "invalid YAML at line 2, column 1: expected ',' or '}', but got '<stream end>'"),
        ("a: 1\na: 2\n", "invalid YAML at line 2, column 1: key 'a' appears twice (line 2)"),
        ("- 1\n- 2\n", "must be a mapping of sections (model, data, ...), got list"),
        ("just text", "must be a mapping of sections (model, data, ...), got str"),
        (
            "a: \x00",
            "invalid YAML: unacceptable character #x0000: special characters are not allowed "
            'in "<unicode string>", position 3',
        ),
    ],
)
def test_bad_yaml(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert messages(info.value) == [message]


def test_empty_file_reports_the_required_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert messages(info.value) == [
        "model: is required but missing",
        "data: is required but missing",
        "total_steps: is required but missing",
    ]


def test_binary_and_huge_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, b"\xff\xfe\x00junk", "bin.yaml"))
    assert messages(info.value) == ["is not UTF-8 text (invalid start byte at byte 0)"]
    big = write(tmp_path, "#" * (MAX_CONFIG_BYTES + 1), "big.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(big)
    assert messages(info.value) == [
        f"is {MAX_CONFIG_BYTES + 1} bytes; a config is at most {MAX_CONFIG_BYTES}"
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-6", 1e-6),
        ("1.0e-6", 1e-6),
        ("-2E+3", -2000.0),
        ("12", 12),
        ("0", 0),
        ("true", True),
        ("False", False),
        ("yes", "yes"),
        ("off", "off"),
        ("1:30", "1:30"),  # not sexagesimal
        ("2024-01-01", "2024-01-01"),  # not a date
        ("~", None),
        (".inf", float("inf")),
    ],
)
def test_yaml_scalars_follow_yaml_1_2(text: str, value: object) -> None:
    assert parse_yaml(text, "t") == value


def test_yaml_round_trip_of_every_preset() -> None:
    for name in known_presets():
        config = load_config(name)
        assert config_from_dict(parse_yaml(config_to_yaml(config), name)) == config


def test_iou_schedule_list_round_trips_through_yaml(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL), ["reward.iou_schedule=[[0.3, 0.7], [1.0, 0.9]]"])
    again = config_from_dict(parse_yaml(config_to_yaml(config), "again"))
    assert again.reward.iou_schedule == [(0.3, 0.7), (1.0, 0.9)]

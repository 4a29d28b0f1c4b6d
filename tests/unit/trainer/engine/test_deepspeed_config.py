"""engine.sharding deepspeed: the config section, DeepSpeed's config dict and the refusals (pure)."""

import pytest

from trainer.config import ConfigError, load_config
from trainer.engine.distributed.zero import deepspeed_config, deepspeed_problems, zero_stage
from trainer.engine.loop import environment_problems


def _problems(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config("tiny-cpu-demo", overrides)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["engine.sharding=deepspeed", "engine.zero_stage=1"],
            "engine.zero_stage: must be 2 or 3 (DeepSpeed ZeRO stages), got 1",
        ),
        (
            ["engine.sharding=fsdp", "engine.zero_stage=2"],
            "engine.zero_stage: needs engine.sharding deepspeed, got sharding fsdp",
        ),
        (["engine.sharding=zero"], "engine.sharding: must be 'none', 'fsdp' or 'deepspeed', got 'zero'"),
    ],
)
def test_bad_deepspeed_configs_name_the_field_and_the_fix(overrides: list[str], message: str) -> None:
    assert _problems(overrides) == [message]


def test_zero_stage_defaults_to_3() -> None:
    assert zero_stage(load_config("tiny-cpu-demo", ["engine.sharding=deepspeed"])) == 3
    assert zero_stage(load_config("tiny-cpu-demo", ["engine.sharding=deepspeed", "engine.zero_stage=2"])) == 2


def test_deepspeed_config_of_a_cpu_float32_run() -> None:
    config = load_config(
        "tiny-cpu-demo",
        ["engine.sharding=deepspeed", "engine.zero_stage=2", "algo.grad_clip=0.5", "algo.micro_batch_size=4"],
    )
    assert config.model.dtype == "float32"
    assert deepspeed_config(config) == {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": 0.5,
        "bf16": {"enabled": False},
        "fp16": {"enabled": False},
        "zero_optimization": {"stage": 2},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 2**31 - 1,
        "wall_clock_breakdown": False,
    }  # without offload, no zero_force_ds_cpu_optimizer


def test_deepspeed_config_of_a_bfloat16_zero3_run_with_offload() -> None:
    config = load_config(
        "tiny-cpu-demo", ["engine.sharding=deepspeed", "engine.offload=true", "model.dtype=bfloat16"]
    )
    built = deepspeed_config(config)
    assert built["bf16"] == {"enabled": True} and built["fp16"] == {"enabled": False}
    assert built["zero_optimization"] == {
        "stage": 3,
        "offload_optimizer": {"device": "cpu"},
        "offload_param": {"device": "cpu"},
    }
    # the trainer's own AdamW steps on the CPU copies; DeepSpeed refuses a client optimizer
    # under offload unless told (found on a GPU: "You are using ZeRO-Offload with a client
    # provided optimizer")
    assert built["zero_force_ds_cpu_optimizer"] is False


def test_deepspeed_without_the_package_is_refused_with_the_install_command() -> None:
    config = load_config("tiny-cpu-demo", ["engine.sharding=deepspeed"])
    problems = deepspeed_problems(config, importable=False)
    assert [str(p) for p in problems] == [
        "engine.sharding: deepspeed is not installed here: pip install 'triune[gpu]' (DeepSpeed 0.19.8), "
        "or use engine.sharding fsdp"
    ]
    assert deepspeed_problems(config, importable=True) == []
    assert deepspeed_problems(load_config("tiny-cpu-demo", []), importable=False) == []  # not asked for


def test_deepspeed_with_float16_is_refused() -> None:
    config = load_config("tiny-cpu-demo", ["engine.sharding=deepspeed", "model.dtype=float16"])
    assert [p.where for p in deepspeed_problems(config, importable=True)] == ["model.dtype"]


def test_the_run_checks_deepspeed_before_anything_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("trainer.engine.loop.deepspeed_importable", lambda: False)
    config = load_config(
        "tiny-cpu-demo", ["engine.kind=ray", "engine.workers=2", "engine.sharding=deepspeed"]
    )
    assert "pip install 'triune[gpu]'" in str(environment_problems(config, {})[0])

"""TrainConfig validation: valid inputs, and a table of invalid ones with their exact messages."""

from __future__ import annotations

from typing import Any

import pytest

from trainer.config import ConfigError, TrainConfig, apply_overrides, config_from_dict

BASE: dict[str, Any] = {
    "model": {"path": "tiny:qwen2_vl:tiny"},
    "data": {"sources": [{"name": "a", "train": ["a.parquet"]}]},
    "total_steps": 10,
}

ALGO_KEYS = (
    "adv_estimator, advantage_sign, clip_high, clip_low, dual_clip_c, dynamic_sampling, entropy_coef, "
    "grad_clip, group_by_length, kl, logprob_micro_batch_size, lr, max_nan_steps, micro_batch_size, "
    "micro_batch_tokens, mini_batch_size, "
    "ppo_epochs, remove_padding, warmup_ratio, weight_decay"
)
TOP_KEYS = (
    "algo, checkpoint, data, engine, eval, model, output_dir, reward, rollout, seed, total_steps, tracking, "
    "warm_start"
)
SCHEDULE_WORDS = "must be dynamic, average, a number or a non-empty list of [fraction, threshold]"


def problems_of(overrides: list[str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        config_from_dict(apply_overrides(BASE, overrides))
    return [str(p) for p in info.value.problems]


def test_minimal_config_gets_the_papers_defaults() -> None:
    config = config_from_dict(BASE)
    assert config.rollout.n == 8
    assert config.rollout.prompts_per_step == 1024
    assert config.rollout.max_response_length == 2048
    assert config.rollout.temperature == 1.0
    assert config.algo.lr == 1e-6
    assert (config.algo.clip_low, config.algo.clip_high) == (0.2, 0.28)
    assert config.algo.warmup_ratio == 0.05
    assert config.algo.kl.kind is None
    assert config.model.freeze == ["vit", "connector"]
    assert config.reward.iou_schedule == "dynamic"
    assert config.prompts_per_update == 1024  # mini_batch_size null -> one on-policy update per batch
    assert not config.algo.dynamic_sampling.enabled  # V-Triune keeps every group
    assert config.algo.dynamic_sampling.max_retries == 2


@pytest.mark.parametrize(
    ("overrides", "check"),
    [
        (["algo.lr=1e-5"], lambda c: c.algo.lr == 1e-5),
        (["algo.lr=3"], lambda c: c.algo.lr == 3.0),  # an integer is a valid float
        (["reward.iou_schedule=0.75"], lambda c: c.reward.iou_schedule == 0.75),
        (["reward.iou_schedule=average"], lambda c: c.reward.iou_schedule == "average"),
        (["reward.iou_schedule=[[0.5, 0.9]]"], lambda c: c.reward.iou_schedule == [(0.5, 0.9)]),
        (["reward.iou_schedule=[[0, 0.5], [0.5, 0.99]]"], lambda c: c.reward.iou_schedule[0] == (0.0, 0.5)),
        (
            ["reward.iou_schedule=[[0.1, 0.85], [0.25, 0.95], [1, 0.99]]"],
            lambda c: c.reward.iou_schedule == [(0.1, 0.85), (0.25, 0.95), (1.0, 0.99)],
        ),
        (["algo.kl.kind=k3", "algo.kl.coef=0.001"], lambda c: c.algo.kl.kind == "k3"),
        (["algo.dual_clip_c=3"], lambda c: c.algo.dual_clip_c == 3.0),
        (["rollout.n=2"], lambda c: c.rollout.n == 2),
        (["algo.mini_batch_size=256"], lambda c: c.prompts_per_update == 256),
        (["model.freeze=[]"], lambda c: c.model.freeze == []),
        (["model.lr.vit=1e-7"], lambda c: c.model.lr.vit == 1e-7),
        (["model.path=tiny:qwen2_5_vl:small"], lambda c: c.model.is_tiny),
        (["model.path=/models/Qwen2.5-VL-7B-Instruct"], lambda c: not c.model.is_tiny),
        (["data.sources.0.name=v3det_train-2.0"], lambda c: c.data.sources[0].name == "v3det_train-2.0"),
        (
            ["tracking.http.url=http://127.0.0.1:8000", "tracking.http.run_id=r1"],
            lambda c: c.tracking.http is not None and c.tracking.http.token_env == "TRIUNE_RUN_TOKEN",
        ),
        (["reward.remote.urls=[http://a:1, https://b]"], lambda c: c.reward.remote.retries == 2),
        (
            ["algo.dynamic_sampling.enabled=true"],
            lambda c: c.algo.dynamic_sampling.enabled and c.algo.dynamic_sampling.max_retries == 2,
        ),
        (["algo.dynamic_sampling.max_retries=0"], lambda c: c.algo.dynamic_sampling.max_retries == 0),
        (["algo.dynamic_sampling.max_retries=16"], lambda c: c.algo.dynamic_sampling.max_retries == 16),
    ],
)
def test_valid_configs(overrides: list[str], check: Any) -> None:
    assert check(config_from_dict(apply_overrides(BASE, overrides)))


INVALID = [
    # unknown keys, with the closest known key suggested
    (["algo.lrr=1"], [f"algo.lrr: unknown key; did you mean lr? known keys: {ALGO_KEYS}"]),
    (["total_step=5"], [f"total_step: unknown key; did you mean total_steps? known keys: {TOP_KEYS}"]),
    # wrong types
    (["rollout.n=true"], ["rollout.n: must be an integer, got True (bool)"]),
    (["rollout.n=1.5"], ["rollout.n: must be an integer, got 1.5 (float)"]),
    (["algo.lr=abc"], ["algo.lr: must be a number, got 'abc' (str)"]),
    (["algo.lr=.nan"], ["algo.lr: must be a finite number, got nan (float)"]),
    (["algo.lr=.inf"], ["algo.lr: must be a finite number, got inf (float)"]),
    (["model.path=3"], ["model.path: must be a string, got 3 (int)"]),
    (["eval.before_training=yes"], ["eval.before_training: must be true or false, got 'yes' (str)"]),
    (["rollout.backend=tpu"], ["rollout.backend: must be 'hf' or 'vllm', got 'tpu'"]),
    (["model.dtype=fp8"], ["model.dtype: must be 'float32', 'bfloat16' or 'float16', got 'fp8'"]),
    (["model.freeze=[vision]"], ["model.freeze[0]: must be 'vit', 'connector' or 'llm', got 'vision'"]),
    (
        ["algo=3"],
        [f"algo: must be a section with keys {ALGO_KEYS}; got 3"],
    ),
    # negative and zero sizes, and absurd ones
    (["rollout.n=-8"], ["rollout.n: must be > 0, got -8"]),
    (["rollout.n=100000"], ["rollout.n: must be <= 1024, got 100000"]),
    (["rollout.max_response_length=0"], ["rollout.max_response_length: must be > 0, got 0"]),
    (
        ["rollout.backend=vllm", "rollout.gpu_memory_utilization=1.5"],
        ["rollout.gpu_memory_utilization: must be <= 1, got 1.5"],
    ),
    (
        ["rollout.backend=vllm", "rollout.gpu_memory_utilization=0"],
        ["rollout.gpu_memory_utilization: must be > 0, got 0"],
    ),
    (
        ["rollout.gpu_memory_utilization=0.4"],
        ["rollout.gpu_memory_utilization: needs rollout.backend vllm, got backend hf"],
    ),
    (["model.min_pixels=-1"], ["model.min_pixels: must be > 0, got -1"]),
    (["algo.lr=-1e-6"], ["algo.lr: must be > 0, got -1e-06"]),
    (["algo.micro_batch_size=0"], ["algo.micro_batch_size: must be > 0, got 0"]),
    (["checkpoint.keep_last=0"], ["checkpoint.keep_last: must be > 0, got 0"]),
    (["data.sources.0.weight=0"], ["data.sources[0].weight: must be > 0, got 0"]),
    (["seed=-1"], ["seed: must be >= 0, got -1"]),
    (["total_steps=0"], ["total_steps: must be > 0, got 0"]),
    (["algo.warmup_ratio=1"], ["algo.warmup_ratio: must be < 1, got 1"]),
    # dynamic sampling (DAPO)
    (
        ["algo.dynamic_sampling.max_retries=-1"],
        [
            "algo.dynamic_sampling.max_retries: must be between 0 and 16 (each retry generates again for "
            "the groups it replaces), got -1"
        ],
    ),
    (
        ["algo.dynamic_sampling.max_retries=17"],
        [
            "algo.dynamic_sampling.max_retries: must be between 0 and 16 (each retry generates again for "
            "the groups it replaces), got 17"
        ],
    ),
    (
        ["algo.dynamic_sampling.max_retries=true"],
        ["algo.dynamic_sampling.max_retries: must be an integer, got True (bool)"],
    ),
    (
        ["algo.dynamic_sampling.enabled=yes"],
        ["algo.dynamic_sampling.enabled: must be true or false, got 'yes' (str)"],
    ),
    (
        ["algo.dynamic_sampling.retries=1"],
        [
            "algo.dynamic_sampling.retries: unknown key; did you mean max_retries? "
            "known keys: enabled, max_retries"
        ],
    ),
    (
        ["algo.dynamic_sampling=true"],
        ["algo.dynamic_sampling: must be a section with keys enabled, max_retries; got True"],
    ),
    # GRPO with a group of one
    (
        ["rollout.n=1"],
        [
            "rollout.n: GRPO needs at least 2 responses per prompt (a group of one has advantage 0), "
            "got 1; set rollout.n >= 2"
        ],
    ),
    # IoU schedules
    (
        ["reward.iou_schedule=0.3"],
        ["reward.iou_schedule: a fixed IoU threshold must be in [0.5, 0.99], got 0.3"],
    ),
    (["reward.iou_schedule=fast"], [f"reward.iou_schedule: {SCHEDULE_WORDS}; got 'fast'"]),
    (["reward.iou_schedule=true"], [f"reward.iou_schedule: {SCHEDULE_WORDS}; got True"]),
    (["reward.iou_schedule=[]"], [f"reward.iou_schedule: {SCHEDULE_WORDS}; got []"]),
    (
        ["reward.iou_schedule=" + "x" * 1000],
        [f"reward.iou_schedule: {SCHEDULE_WORDS}; got '" + "x" * 56 + "..."],
    ),
    (
        ["reward.iou_schedule=[[0.5]]"],
        ["reward.iou_schedule[0]: must be a pair [fraction, threshold] of numbers, got [0.5]"],
    ),
    (
        ["reward.iou_schedule=[[0.5, 0.9], [0.4, 0.95]]"],
        ["reward.iou_schedule[1]: fractions must increase strictly, got 0.4 after 0.5"],
    ),
    (
        ["reward.iou_schedule=[[0.5, 0.9], [1.5, 0.95]]"],
        ["reward.iou_schedule[1]: fraction must be in [0, 1], got 1.5"],
    ),
    (
        ["reward.iou_schedule=[[0.5, 0.9], [0.5, 0.95]]"],
        ["reward.iou_schedule[1]: fractions must increase strictly, got 0.5 after 0.5"],
    ),
    (
        ["reward.iou_schedule=[" + "[0.5, 0.9], " * 101 + "]"],
        ["reward.iou_schedule: must have at most 100 steps, got 101"],
    ),
    (
        ["reward.iou_schedule=[[0.5, 1.2], [1, 0.9]]"],
        ["reward.iou_schedule[0]: threshold must be in [0.5, 0.99], got 1.2"],
    ),
    # fields that depend on each other
    (
        ["algo.kl.coef=0.1"],
        ["algo.kl.coef: is 0.1 but algo.kl.kind is null; set kind to mse, k1 or k3, or coef to 0"],
    ),
    (
        ["algo.kl.kind=k3"],
        ["algo.kl.coef: must be > 0 when algo.kl.kind is 'k3'; set it, or set kind to null"],
    ),
    (["algo.dual_clip_c=1"], ["algo.dual_clip_c: must be > 1, got 1"]),
    (["model.max_pixels=10"], ["model.max_pixels: must be >= model.min_pixels (262144), got 10"]),
    (
        ["algo.mini_batch_size=300"],
        ["algo.mini_batch_size: must divide rollout.prompts_per_step (1024), got 300"],
    ),
    (
        ["model.freeze=[vit, connector, llm]"],
        ["model.freeze: freezes every group, so nothing would be trained; leave llm out of it"],
    ),
    (
        ["model.freeze=[vit, vit]"],
        ["model.freeze: lists a group twice: ['vit', 'vit']; list each of vit, connector, llm once"],
    ),
    (
        ["model.path=tiny:foo"],
        [
            "model.path: a tiny model is written tiny:<arch>:<size> with arch in "
            "qwen2_vl, qwen2_5_vl, qwen3_vl and size in tiny, small, 2b, 7b; got 'tiny:foo'"
        ],
    ),
    # data sources
    (["data.sources=[]"], ["data.sources: must list at least one item, got 0"]),
    (["data.sources.0.train=[]"], ["data.sources[0].train: must list at least one item, got 0"]),
    (['data.sources.0.train=[""]'], ["data.sources[0].train[0]: must not be empty"]),
    (
        ["data.sources=[{name: a, train: [x]}, {name: a, train: [y]}]"],
        ["data.sources[1].name: 'a' is used by an earlier source; rename one"],
    ),
    (
        ["data.sources.0.name=a/b"],
        ["data.sources[0].name: must be 1 to 200 letters, digits, '_', '.' or '-', got 'a/b'"],
    ),
    (
        ["data.sources.0.name=" + "x" * 10_000],
        ["data.sources[0].name: must be 1 to 200 letters, digits, '_', '.' or '-', got '" + "x" * 56 + "..."],
    ),
    # tracking and remote reward settings
    (
        ["tracking.http.url=ftp://x", "tracking.http.run_id=r1"],
        ["tracking.http.url: must be an http:// or https:// URL, got 'ftp://x'"],
    ),
    (["tracking.http.url=http://h"], ["tracking.http.run_id: is required but missing"]),
    (["reward.remote.urls=[]"], ["reward.remote.urls: must list at least one item, got 0"]),
    (
        ["reward.remote.urls=[http://a]", "reward.remote.token_env=1BAD"],
        [
            "reward.remote.token_env: must be an environment variable name (letters, digits and '_', "
            "not starting with a digit), got '1BAD'"
        ],
    ),
    # several problems are reported together
    (
        ["rollout.n=0", "algo.lr=0", "eval.every=-1"],
        ["rollout.n: must be > 0, got 0", "algo.lr: must be > 0, got 0", "eval.every: must be >= 0, got -1"],
    ),
]


@pytest.mark.parametrize(("overrides", "expected"), INVALID, ids=[" ".join(o)[:50] for o, _ in INVALID])
def test_invalid_configs_name_the_field_and_the_fix(overrides: list[str], expected: list[str]) -> None:
    assert problems_of(overrides) == expected


def test_missing_sections_and_the_whole_message() -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict({}, "run.yaml")
    assert str(info.value) == (
        "invalid config run.yaml:\n"
        "  model: is required but missing\n"
        "  data: is required but missing\n"
        "  total_steps: is required but missing"
    )


@pytest.mark.parametrize("data", [[1, 2], "model: x", 3, None])
def test_a_config_must_be_a_mapping(data: Any) -> None:
    with pytest.raises(ConfigError) as info:
        config_from_dict(data)
    assert [str(p) for p in info.value.problems] == [
        f"must be a mapping of sections (model, data, ...), got {type(data).__name__}"
    ]


def test_config_is_immutable() -> None:
    config = config_from_dict(BASE)
    with pytest.raises(ValueError, match="frozen"):
        config.algo.lr = 1.0  # type: ignore[misc]


def test_json_schema_for_the_web_form_has_descriptions() -> None:
    schema = TrainConfig.model_json_schema()
    algo = schema["$defs"]["AlgoConfig"]["properties"]
    assert "DAPO" in algo["clip_high"]["description"]
    assert algo["lr"]["default"] == 1e-6

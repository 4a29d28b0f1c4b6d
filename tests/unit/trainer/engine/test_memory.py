import pytest

from trainer.config import load_config
from trainer.engine.memory import (
    GIB,
    ModelShape,
    estimate_for,
    estimate_memory,
    memory_problems,
    meta_model,
    micro_batch_rows,
    model_shape,
)

SHAPE = ModelShape(parameters=7_000_000_000, trainable=6_000_000_000, hidden=3584, layers=28, kv_channels=512)


def _estimate(**changes):
    settings = {
        "dtype_bytes": 2,
        "shards": 1,
        "offload": False,
        "micro_batch": 4,
        "sequence": 2048,
        "gradient_checkpointing": False,
        "generated_together": 64,
    }
    return estimate_memory(SHAPE, **(settings | changes))


def test_the_terms_are_the_hand_computed_ones() -> None:
    e = _estimate()
    assert e.weights == 14e9 and e.gradients == 12e9 and e.optimizer == 24e9
    assert e.activations == 34 * 28 * 3584 * 2048 * 4 * 2
    assert e.kv_cache == 2 * 28 * 512 * 2048 * 64 * 2


def test_sharding_divides_the_states_and_offload_moves_them_off_the_gpu() -> None:
    whole, sharded, offloaded = _estimate(), _estimate(shards=8), _estimate(shards=8, offload=True)
    assert sharded.weights == whole.weights / 8 and sharded.optimizer == whole.optimizer / 8
    assert sharded.activations == whole.activations  # each worker still runs its micro-batch
    assert offloaded.weights == offloaded.gradients == offloaded.optimizer == 0.0


def test_gradient_checkpointing_keeps_one_layer_and_the_layer_inputs() -> None:
    assert _estimate(gradient_checkpointing=True).activations == (34 + 2 * 28) * 3584 * 2048 * 4 * 2


def test_a_run_that_does_not_fit_is_refused_with_the_estimate_and_what_to_change() -> None:
    problems = memory_problems(_estimate(micro_batch=64), 80 * GIB, device="NVIDIA H100")
    assert len(problems) == 1
    text = str(problems[0])
    assert "needs about" in text and "NVIDIA H100 has 80.0 GiB" in text and "activations" in text
    assert "model.gradient_checkpointing" in text and "engine.sharding fsdp" in text
    assert "algo.micro_batch_tokens" in text
    assert memory_problems(_estimate(micro_batch=1, shards=8), 80 * GIB, device="x") == []


@pytest.mark.parametrize(("size", "billions"), [("2b", 1.98), ("7b", 7.21)])
def test_the_meta_model_counts_the_parameters_without_memory(size: str, billions: float) -> None:
    config = load_config(
        "tiny-cpu-demo",
        [f"model.path=tiny:qwen2_vl:{size}", "model.freeze=[vit, connector]", "model.dtype=bfloat16"],
    )
    shape = model_shape(meta_model(config))
    assert shape.parameters / 1e9 == pytest.approx(billions, abs=0.01)
    assert 0 < shape.trainable < shape.parameters  # the vision tower is frozen
    assert estimate_for(config, shape).weights == shape.parameters * 2


def test_a_token_budget_lowers_the_activation_estimate_to_the_rows_it_allows() -> None:
    base = ["model.path=tiny:qwen2_vl:7b", "algo.micro_batch_size=16", "rollout.max_response_length=2048"]
    plain = load_config("tiny-cpu-demo", base)
    sequence = plain.data.max_prompt_length + plain.rollout.max_response_length
    budgeted = load_config("tiny-cpu-demo", [*base, f"algo.micro_batch_tokens={4 * sequence + 1}"])
    assert (micro_batch_rows(plain), micro_batch_rows(budgeted)) == (16, 4)
    shape = model_shape(meta_model(plain))
    full, bounded = estimate_for(plain, shape), estimate_for(budgeted, shape)
    assert bounded.activations == pytest.approx(full.activations / 4)
    assert bounded.weights == full.weights and bounded.optimizer == full.optimizer
    tiny_budget = load_config("tiny-cpu-demo", [*base, "algo.micro_batch_tokens=10"])
    assert micro_batch_rows(tiny_budget) == 1  # one sequence a pass, however long

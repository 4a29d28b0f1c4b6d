import copy
import dataclasses
import math
import re

import pytest
import torch

from trainer.algo import (
    UpdateConfig,
    group_advantages,
    policy_loss,
    recompute_logprobs,
    update_policy,
    warmup_constant_schedule,
)
from trainer.algo.update import micro_batches, padded_tokens
from trainer.models import freeze, group_of, param_groups
from trainer.rollout import collate

from .conftest import make_rollouts

PAD = 0


def _policy_objective(model, rollouts, old_logps, advantages):
    """The token-mean clipped loss of the whole batch against fixed old log-probs."""
    batch = collate(rollouts, pad_token_id=PAD)
    new = recompute_logprobs(model, rollouts, pad_token_id=PAD, micro_batch_size=len(rollouts))
    width = batch.response_mask.shape[1]
    pad = torch.zeros(len(rollouts), width)
    logp, old = pad.clone(), pad.clone()
    for row, (n, o) in enumerate(zip(new, old_logps, strict=True)):
        logp[row, : n.shape[0]], old[row, : o.shape[0]] = n, o
    return policy_loss(logp, old, advantages, batch.response_mask)[0].item()


def test_one_step_reduces_the_loss_with_positive_advantages(tiny):
    model, processor = tiny
    freeze(model, ["vit", "connector"])
    rollouts = make_rollouts(processor)
    advantages = torch.ones(len(rollouts))
    old = recompute_logprobs(model, rollouts, pad_token_id=PAD, micro_batch_size=8)
    before = _policy_objective(model, rollouts, old, advantages)
    assert before == pytest.approx(-1.0)  # on-policy: ratio 1, loss = −mean A
    optimizer = torch.optim.AdamW(param_groups(model, {"llm": 1e-3}))
    metrics = update_policy(model, optimizer, rollouts, advantages, pad_token_id=PAD)
    after = _policy_objective(model, rollouts, old, advantages)
    assert after < before - 1e-3
    assert metrics["actor/pg_loss"] == pytest.approx(-1.0)
    assert metrics["actor/clipfrac"] == 0.0 and metrics["actor/ppo_kl"] == 0.0
    assert metrics["actor/optimizer_steps"] == 1.0 and metrics["actor/skipped_steps"] == 0.0
    assert metrics["actor/lr"] == 1e-3
    assert metrics["actor/entropy"] > 0


def test_frozen_groups_bit_identical_after_update(tiny):
    model, processor = tiny
    freeze(model, ["vit", "connector"])
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(param_groups(model, {"llm": 1e-3}), weight_decay=0.1)
    update_policy(
        model, optimizer, make_rollouts(processor), torch.tensor([1.0, -1.0, 0.5, -0.5]), pad_token_id=PAD
    )
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]) == (group_of(name) != "llm"), name


def test_micro_batching_gives_the_same_update_as_one_batch(tiny):
    # Token-mean over the mini-batch: micro-batch losses weighted by their share of tokens.
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(3, 7, 1, 5, 2, 6))
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.3, 0.7])
    results = []
    for micro in (6, 4, 1):
        clone = copy.deepcopy(model)
        optimizer = torch.optim.SGD(clone.parameters(), lr=1.0)
        config = UpdateConfig(micro_batch_size=micro, max_grad_norm=1e9)
        metrics = update_policy(clone, optimizer, rollouts, advantages, pad_token_id=PAD, config=config)
        results.append((clone, metrics))
    reference = dict(results[0][0].named_parameters())
    for clone, metrics in results[1:]:
        for name, param in clone.named_parameters():
            torch.testing.assert_close(param, reference[name], atol=2e-6, rtol=1e-4, msg=name)
        assert metrics["actor/pg_loss"] == pytest.approx(results[0][1]["actor/pg_loss"], abs=1e-6)
        assert metrics["actor/grad_norm"] == pytest.approx(results[0][1]["actor/grad_norm"], rel=1e-4)


def test_length_grouped_micro_batches_give_the_same_update_with_less_padding(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(3, 40, 1, 37, 2, 35, 4, 33))
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.3, 0.7, -0.2, 0.1])
    results = []
    for grouped in (False, True):
        clone = copy.deepcopy(model)
        optimizer = torch.optim.SGD(clone.parameters(), lr=1.0)
        config = UpdateConfig(micro_batch_size=2, max_grad_norm=1e9, group_by_length=grouped)
        metrics = update_policy(clone, optimizer, rollouts, advantages, pad_token_id=PAD, config=config)
        results.append((clone, metrics))
    reference = dict(results[0][0].named_parameters())
    moved = False
    for name, param in results[1][0].named_parameters():
        torch.testing.assert_close(param, reference[name], atol=2e-6, rtol=1e-4, msg=name)
        moved |= not torch.equal(param, dict(model.named_parameters())[name])
    assert moved  # the update did something, so equal updates mean something
    assert results[1][1]["actor/pg_loss"] == pytest.approx(results[0][1]["actor/pg_loss"], abs=1e-6)

    prompts = [r.prompt.length for r in rollouts]
    responses = [r.response_length for r in rollouts]
    in_order = padded_tokens(micro_batches(range(8), 2), prompts, responses)
    grouped = padded_tokens(micro_batches(range(8), 2, (prompts, responses)), prompts, responses)
    assert grouped < in_order / 4, (grouped, in_order)


def test_length_grouped_log_probs_come_back_in_rollout_order(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(3, 40, 1, 37, 2))
    plain = recompute_logprobs(model, rollouts, pad_token_id=PAD, micro_batch_size=2)
    grouped = recompute_logprobs(model, rollouts, pad_token_id=PAD, micro_batch_size=2, group_by_length=True)
    assert [g.shape[0] for g in grouped] == [3, 40, 1, 37, 2]
    for a, b in zip(plain, grouped, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_off_policy_mini_batches_and_epochs(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor)
    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
    config = UpdateConfig(mini_batch_size=2, micro_batch_size=1, ppo_epochs=2)
    metrics = update_policy(
        model, optimizer, rollouts, torch.tensor([1.0, 1.0, -1.0, 1.0]), pad_token_id=PAD, config=config
    )
    # 4 rollouts / 2 per mini-batch × 2 epochs = 4 optimizer steps; later steps see a moved policy.
    assert metrics["actor/optimizer_steps"] == 4.0
    assert metrics["actor/ppo_kl"] != 0.0
    assert metrics["actor/pg_loss"] != pytest.approx(-0.5)


def test_old_logprobs_come_from_the_policy_not_the_rollout(tiny):
    model, processor = tiny
    rollouts = [
        dataclasses.replace(r, logprobs=torch.full((r.response_length,), -100.0))
        for r in make_rollouts(processor)
    ]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    metrics = update_policy(model, optimizer, rollouts, torch.ones(4), pad_token_id=PAD)
    # With the engine's −100 the ratio would be e^{100}: clipped everywhere, loss −1.28.
    assert metrics["actor/pg_loss"] == pytest.approx(-1.0)
    assert metrics["actor/clipfrac"] == 0.0


def test_layer_grad_norms_compose_the_global_norm(tiny):
    model, processor = tiny
    freeze(model, [])
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    metrics = update_policy(
        model, optimizer, make_rollouts(processor), torch.tensor([1.0, -1.0, 0.5, -0.5]), pad_token_id=PAD
    )
    layers = {k: v for k, v in metrics.items() if k.startswith("grad_norm/")}
    assert {
        "grad_norm/vision.0",
        "grad_norm/vision.1",
        "grad_norm/language.0",
        "grad_norm/language.1",
    } <= set(layers)
    assert "grad_norm/connector.merger" in layers
    # The global norm before clipping is the root of the sum of the squared layer norms.
    assert math.sqrt(sum(v * v for v in layers.values())) == pytest.approx(
        metrics["actor/grad_norm"], rel=1e-5
    )
    freeze(model, ["vit", "connector"])
    metrics = update_policy(
        model,
        torch.optim.SGD(param_groups(model, {"llm": 0.0})),
        make_rollouts(processor),
        torch.ones(4),
        pad_token_id=PAD,
    )
    assert not [k for k in metrics if k.startswith(("grad_norm/vision", "grad_norm/connector"))]


def test_gradient_clipping_bounds_the_step(tiny):
    # SGD with lr 1: the step is the clipped gradient, whose norm is at most max_grad_norm.
    model, processor = tiny
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    config = UpdateConfig(max_grad_norm=1e-3)
    metrics = update_policy(
        model,
        optimizer,
        make_rollouts(processor),
        torch.tensor([3.0, -3.0, 3.0, -3.0]),
        pad_token_id=PAD,
        config=config,
    )
    step = math.sqrt(
        sum(float((p.detach() - b).square().sum()) for p, b in zip(model.parameters(), before, strict=True))
    )
    assert metrics["actor/grad_norm"] > 1e-3
    assert step == pytest.approx(1e-3, rel=1e-3)


def test_non_finite_loss_skips_the_step(tiny):
    model, processor = tiny

    def poison(module, _inputs, output):
        return output * float("nan") if module.training else output

    handle = model.get_output_embeddings().register_forward_hook(poison)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    try:
        metrics = update_policy(model, optimizer, make_rollouts(processor), torch.ones(4), pad_token_id=PAD)
    finally:
        handle.remove()
    assert metrics["actor/skipped_steps"] == 1.0 and metrics["actor/optimizer_steps"] == 0.0
    assert "actor/grad_norm" not in metrics
    assert all(p.grad is None for p in model.parameters())
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), name
    assert optimizer.state == {} or all(not s for s in optimizer.state.values())


def test_kl_to_reference(tiny):
    model, processor = tiny
    reference = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    config = UpdateConfig(kl_coef=0.1, kl_kind="k3", mini_batch_size=2)
    metrics = update_policy(
        model,
        optimizer,
        make_rollouts(processor),
        torch.ones(4),
        pad_token_id=PAD,
        config=config,
        ref_model=reference,
    )
    # First mini-batch: policy = reference, k3 = 0; the second sees a moved policy, k3 > 0.
    assert metrics["actor/kl"] > 0
    unchanged = UpdateConfig(kl_coef=0.1)
    metrics = update_policy(
        reference,
        torch.optim.SGD(reference.parameters(), lr=0.0),
        make_rollouts(processor),
        torch.ones(4),
        pad_token_id=PAD,
        config=unchanged,
        ref_model=copy.deepcopy(reference),
    )
    assert metrics["actor/kl"] == 0.0


def test_lr_metric_follows_the_scheduler(tiny):
    model, processor = tiny
    freeze(model, ["vit"])
    optimizer = torch.optim.AdamW(param_groups(model, {"connector": 1.0, "llm": 1e-3}))
    scheduler = warmup_constant_schedule(optimizer, total_steps=40, warmup_ratio=0.1)  # 4 warm-up steps
    rollouts = make_rollouts(processor, lengths=(2, 2))
    seen = []
    for _ in range(5):
        seen.append(
            update_policy(model, optimizer, rollouts, torch.tensor([1.0, -1.0]), pad_token_id=PAD)["actor/lr"]
        )
        scheduler.step()
    assert seen == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3])  # the llm group's rate


def test_training_mode_restored(tiny):
    model, processor = tiny
    model.eval()
    update_policy(
        model,
        torch.optim.SGD(model.parameters(), lr=0.0),
        make_rollouts(processor),
        torch.ones(4),
        pad_token_id=PAD,
    )
    assert not model.training


def test_works_with_grpo_advantages_from_rewards(tiny):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(2, 3, 4, 5))
    advantages = group_advantages(
        torch.tensor([1.0, 0.0, 0.0, 1.0]), group_ids=[r.prompt_index for r in rollouts]
    )
    # Rollouts alternate prompts 0, 1, 0, 1: prompt 0 gets rewards (1, 0), prompt 1 gets (0, 1);
    # each group: mean 0.5, unbiased std 0.7071, so ±0.5 / 0.7071 = ±0.7071.
    assert advantages.tolist() == pytest.approx([0.70711, -0.70711, -0.70711, 0.70711], abs=1e-4)
    metrics = update_policy(
        model, torch.optim.AdamW(model.parameters()), rollouts, advantages, pad_token_id=PAD
    )
    assert metrics["actor/optimizer_steps"] == 1.0


@pytest.mark.parametrize(
    ("rollout_count", "advantages", "kwargs", "message"),
    [
        (0, torch.zeros(0), {}, "no rollouts to update on"),
        (4, torch.zeros(3), {}, "advantages must be a tensor of shape (4,), got (3,)"),
        (4, torch.zeros(4, 1), {}, "advantages must be a tensor of shape (4,), got (4, 1)"),
        (4, [0.0] * 4, {}, "advantages must be a tensor of shape (4,), got list"),
        (4, torch.tensor([0.0, float("nan"), 0.0, 0.0]), {}, "advantages must be finite"),
        (4, torch.zeros(4), {"config": UpdateConfig(kl_coef=0.1)}, "kl_coef > 0 needs a ref_model"),
    ],
)
def test_rejects_bad_input(tiny, rollout_count, advantages, kwargs, message):
    model, processor = tiny
    rollouts = make_rollouts(processor)[:rollout_count]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        update_policy(
            model,
            torch.optim.SGD(model.parameters(), lr=0.1),
            rollouts,
            advantages,
            pad_token_id=PAD,
            **kwargs,
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mini_batch_size": 0}, "mini_batch_size must be >= 1 or None, got 0"),
        ({"micro_batch_size": 0}, "micro_batch_size must be >= 1, got 0"),
        ({"ppo_epochs": 0}, "ppo_epochs must be >= 1, got 0"),
        ({"clip_low": 1.0}, "clip_low must be in [0, 1), got 1.0"),
        ({"clip_high": -0.1}, "clip_high must be >= 0, got -0.1"),
        ({"dual_clip_c": 0.5}, "dual_clip_c must be > 1 or None, got 0.5"),
        ({"kl_coef": -1.0}, "kl_coef and entropy_coef must be >= 0, got -1.0, 0.0"),
        ({"kl_kind": "k4"}, "unknown kl_kind 'k4'; known: k1, k3, mse"),
        ({"max_grad_norm": 0.0}, "max_grad_norm must be > 0, got 0.0"),
        ({"temperature": 0.0}, "temperature must be > 0, got 0.0"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        UpdateConfig(**kwargs)


def _cost(group, prompts, responses, packed):
    if packed:
        return sum(prompts[i] + responses[i] for i in group)
    return len(group) * (max(prompts[i] for i in group) + max(responses[i] for i in group))


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("group", [False, True])
def test_token_budgets_bound_every_micro_batch(packed, group):
    import random

    rng = random.Random(7)
    prompts = [rng.choice((30, 60, 90)) for _ in range(200)]
    responses = [rng.randint(1, 500) for _ in range(200)]
    indices = list(range(200))
    groups = micro_batches(indices, 16, (prompts, responses), group=group, tokens=1000, packed=packed)
    assert sorted(i for g in groups for i in g) == indices  # every sequence once
    for g in groups:
        assert 1 <= len(g) <= 16
        assert len(g) == 1 or _cost(g, prompts, responses, packed) <= 1000
    if not group:
        assert [i for g in groups for i in g] == indices  # batch order kept
    # the budget is filled: two neighbours could not have been merged
    merged = [a + b for a, b in zip(groups, groups[1:], strict=False) if not group]
    assert all(len(m) > 16 or _cost(m, prompts, responses, packed) > 1000 for m in merged)


def test_a_token_budget_needs_the_lengths():
    with pytest.raises(ValueError, match="a token budget needs each sequence's lengths"):
        micro_batches([0, 1], 2, tokens=10)
    with pytest.raises(ValueError, match="micro_batch_tokens must be >= 1 or None, got 0"):
        UpdateConfig(micro_batch_tokens=0)


@pytest.mark.parametrize("remove_padding", [False, True])
def test_token_budgeted_micro_batches_give_the_same_update_and_stay_within_the_budget(tiny, remove_padding):
    model, processor = tiny
    rollouts = make_rollouts(processor, lengths=(3, 40, 1, 37, 2, 35, 4, 33))
    advantages = torch.tensor([1.0, -0.5, 2.0, -1.0, 0.3, 0.7, -0.2, 0.1])
    prompts = [r.prompt.length for r in rollouts]
    budget = 2 * max(prompts) + 45  # two short sequences, or one long one, per pass (unpacked)
    results, widths = [], []
    for tokens in (None, budget):
        clone = copy.deepcopy(model)
        seen = []
        embeddings = clone.get_input_embeddings()
        hook = embeddings.register_forward_hook(lambda m, i, o, seen=seen: seen.append(i[0].shape))
        optimizer = torch.optim.SGD(clone.parameters(), lr=1.0)
        config = UpdateConfig(
            micro_batch_size=4, max_grad_norm=1e9, micro_batch_tokens=tokens, remove_padding=remove_padding
        )
        metrics = update_policy(clone, optimizer, rollouts, advantages, pad_token_id=PAD, config=config)
        hook.remove()
        results.append((dict(clone.named_parameters()), metrics))
        widths.append(seen)
    for name, param in results[1][0].items():
        torch.testing.assert_close(param, results[0][0][name], atol=2e-6, rtol=1e-4, msg=name)
    assert results[1][1]["actor/pg_loss"] == pytest.approx(results[0][1]["actor/pg_loss"], abs=1e-6)
    assert all(rows * width <= budget for rows, width in widths[1])  # every forward, recompute included
    assert len(widths[1]) > len(widths[0])  # the budget split what the count alone did not

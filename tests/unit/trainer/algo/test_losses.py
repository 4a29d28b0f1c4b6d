import doctest
import importlib
import math
import re

import pytest
import torch

from trainer.algo import entropy_from_logits, kl_penalty, masked_mean, policy_loss


def _one_token(ratio: float, advantage: float, **kwargs):
    logp = torch.tensor([[math.log(ratio)]])
    return policy_loss(logp, torch.zeros(1, 1), torch.tensor([advantage]), torch.ones(1, 1), **kwargs)


@pytest.mark.parametrize(
    ("ratio", "advantage", "kwargs", "loss", "clipfrac", "clipfrac_lower"),
    [
        # inside [0.8, 1.28]: −A·ρ = −1·1.1
        (1.1, 1.0, {}, -1.1, 0.0, 0.0),
        # A > 0 above 1 + 0.28: max(−1.5, −1.28) = −1.28, clip active
        (1.5, 1.0, {}, -1.28, 1.0, 0.0),
        # A < 0 below 1 − 0.2: max(0.5, 0.8) = 0.8, clip active
        (0.5, -1.0, {}, 0.8, 1.0, 0.0),
        # A > 0 below the range: max(−0.5, −0.8) = −0.5, the pessimistic unclipped term wins
        (0.5, 1.0, {}, -0.5, 0.0, 0.0),
        # A < 0 above the range: max(1.5, 1.28) = 1.5, no clip (this is what dual clip bounds)
        (1.5, -1.0, {}, 1.5, 0.0, 0.0),
        # symmetric clip 0.2: A > 0 at ρ = 1.25 is clipped to 1.2: −1.2
        (1.25, 1.0, {"clip_high": 0.2}, -1.2, 1.0, 0.0),
        # clip-higher 0.28 leaves ρ = 1.25 alone: −1.25
        (1.25, 1.0, {}, -1.25, 0.0, 0.0),
        # dual clip c = 3, A = −1, ρ = 5: max(5, 1.28) = 5 > 3 → 3
        (5.0, -1.0, {"dual_clip_c": 3.0}, 3.0, 0.0, 1.0),
        # dual clip c = 3, A = −2, ρ = 2: max(4, 2.56) = 4 < 6 → 4
        (2.0, -2.0, {"dual_clip_c": 3.0}, 4.0, 0.0, 0.0),
        # dual clip leaves positive advantages alone: A = 1, ρ = 5 → −1.28
        (5.0, 1.0, {"dual_clip_c": 3.0}, -1.28, 1.0, 0.0),
        # A = 0: no signal
        (3.0, 0.0, {}, 0.0, 0.0, 0.0),
    ],
)
def test_clipping_hand_computed(ratio, advantage, kwargs, loss, clipfrac, clipfrac_lower):
    value, metrics = _one_token(ratio, advantage, **kwargs)
    assert value.item() == pytest.approx(loss, abs=1e-6)
    assert metrics == {
        "actor/pg_loss": pytest.approx(loss, abs=1e-6),
        "actor/clipfrac": clipfrac,
        "actor/clipfrac_lower": clipfrac_lower,
    }


def test_token_mean_over_ragged_lengths():
    # Row 0 has 1 valid token with loss −2 (A = 2), row 1 has 3 with loss +1 (A = −1), ratio 1.
    # Token-mean: (−2 + 3·1) / 4 = 0.25 (a per-sequence mean would give (−2 + 1) / 2 = −0.5).
    mask = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    loss, _ = policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([2.0, -1.0]), mask)
    assert loss.item() == pytest.approx(0.25)


def test_padding_with_nan_does_not_leak():
    logp = torch.tensor([[0.0, float("nan")], [0.0, 0.0]])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    loss, metrics = policy_loss(logp, torch.zeros(2, 2), torch.tensor([1.0, 1.0]), mask)
    assert loss.item() == pytest.approx(-1.0)
    assert math.isfinite(metrics["actor/clipfrac"])


def test_nan_in_a_valid_token_propagates():
    logp = torch.tensor([[float("nan")]])
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([1.0]), torch.ones(1, 1))
    assert math.isnan(loss.item())


def test_per_token_advantages_accepted():
    advantages = torch.tensor([[1.0, -1.0]])
    loss, _ = policy_loss(torch.zeros(1, 2), torch.zeros(1, 2), advantages, torch.ones(1, 2))
    assert loss.item() == pytest.approx(0.0)  # (−1 + 1) / 2


def test_gradient_zero_where_clipped():
    # Token 0 inside the range: d/dlogp (−A·exp(logp − old)) / N = −1·1.1 / 2; token 1 clipped: 0.
    logp = torch.tensor([[math.log(1.1), math.log(1.5)]], requires_grad=True)
    loss, _ = policy_loss(logp, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2))
    loss.backward()
    assert logp.grad[0].tolist() == pytest.approx([-0.55, 0.0], abs=1e-6)


def _loop_policy_loss(logp, old, adv, mask, low, high, c):
    total, count = 0.0, 0.0
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[b, t] == 0:
                continue
            a = float(adv[b])
            ratio = math.exp(float(logp[b, t] - old[b, t]))
            term = max(-a * ratio, -a * min(max(ratio, 1 - low), 1 + high))
            if c is not None and a < 0:
                term = min(term, -a * c)
            total += term
            count += 1
    return total / count


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("dual_clip_c", [None, 3.0])
def test_vectorised_matches_a_plain_loop(seed, dual_clip_c):
    generator = torch.Generator().manual_seed(seed)
    logp = -torch.rand(4, 7, generator=generator) * 3
    old = logp + torch.randn(4, 7, generator=generator) * 0.8
    adv = torch.randn(4, generator=generator)
    lengths = torch.randint(1, 8, (4,), generator=generator)
    mask = (torch.arange(7)[None] < lengths[:, None]).float()
    logp, old, adv, mask = logp.double(), old.double(), adv.double(), mask.double()
    loss, _ = policy_loss(logp, old, adv, mask, 0.2, 0.28, dual_clip_c)
    assert loss.item() == pytest.approx(
        _loop_policy_loss(logp, old, adv, mask, 0.2, 0.28, dual_clip_c), abs=1e-9
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (
            (torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2), torch.ones(2, 3)),
            {},
            "shapes must match: logp (2, 3), old_logp (2, 2), advantages (2, 3), mask (2, 3)",
        ),
        (
            (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3)),
            {},
            "advantages must have one value per row of logp: advantages (3,), logp (2, 3)",
        ),
        (
            (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2), torch.zeros(2, 3)),
            {},
            "policy_loss: the mask selects no token",
        ),
        (
            (torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1)),
            {"clip_low": 1.0},
            "need 0 <= clip_low < 1 and clip_high >= 0, got clip_low=1.0, clip_high=0.28",
        ),
        (
            (torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1)),
            {"clip_high": -0.1},
            "need 0 <= clip_low < 1 and clip_high >= 0, got clip_low=0.2, clip_high=-0.1",
        ),
        (
            (torch.zeros(1, 1), torch.zeros(1, 1), torch.zeros(1), torch.ones(1, 1)),
            {"dual_clip_c": 1.0},
            "dual_clip_c must be > 1, got 1.0",
        ),
    ],
)
def test_policy_loss_rejects_bad_input(args, kwargs, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        policy_loss(*args, **kwargs)


@pytest.mark.parametrize(
    ("d", "kind", "expected"),
    [
        # d = logp − ref_logp
        (1.0, "k1", 1.0),
        (1.0, "mse", 0.5),  # ½·1²
        (1.0, "k3", math.exp(-1.0)),  # e^{−1} + 1 − 1
        (-0.5, "k1", -0.5),
        (-0.5, "mse", 0.125),  # ½·0.25
        (-0.5, "k3", math.exp(0.5) - 1.5),  # e^{0.5} − 0.5 − 1 = 0.14872
        (0.0, "k3", 0.0),
    ],
)
def test_kl_hand_computed(d, kind, expected):
    value = kl_penalty(torch.tensor([[d]]), torch.tensor([[0.0]]), kind)
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_k3_is_non_negative_and_unbiased_estimate_of_kl():
    # Sample from p, average k3(log p − log q) → KL(p ‖ q).
    generator = torch.Generator().manual_seed(0)
    p = torch.tensor([0.5, 0.3, 0.2])
    q = torch.tensor([0.2, 0.3, 0.5])
    samples = torch.multinomial(p, 200_000, replacement=True, generator=generator)
    k3 = kl_penalty(p.log()[samples], q.log()[samples], "k3")
    assert (k3 >= 0).all()
    exact = float((p * (p / q).log()).sum())  # 0.27489
    assert k3.mean().item() == pytest.approx(exact, abs=5e-3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(2), torch.zeros(2), "k2"), "unknown KL estimator 'k2'; known: k1, k3, mse"),
        ((torch.zeros(2), torch.zeros(3), "k1"), "shapes must match: logp (2,), ref_logp (3,)"),
    ],
)
def test_kl_rejects_bad_input(args, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        kl_penalty(*args)


def test_entropy_hand_computed():
    assert entropy_from_logits(torch.zeros(8)).item() == pytest.approx(math.log(8))
    assert entropy_from_logits(torch.tensor([0.0, -1e4])).item() == pytest.approx(0.0, abs=1e-6)
    # p = (0.5, 0.25, 0.25): H = 0.5 ln 2 + 2 · 0.25 ln 4 = 1.5 ln 2
    logits = torch.tensor([0.5, 0.25, 0.25]).log()
    assert entropy_from_logits(logits).item() == pytest.approx(1.5 * math.log(2))


@pytest.mark.parametrize("seed", range(3))
def test_entropy_matches_definition(seed):
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(seed)) * 4
    probs = torch.softmax(logits, -1)
    expected = -(probs * probs.log()).sum(-1)
    torch.testing.assert_close(entropy_from_logits(logits), expected, atol=1e-5, rtol=0)
    assert entropy_from_logits(logits.bfloat16()).dtype == torch.float32


def test_masked_mean_hand_computed():
    values = torch.tensor([[1.0, 2.0, float("nan")], [4.0, float("inf"), 6.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    assert masked_mean(values, mask).item() == pytest.approx(7 / 3)  # (1 + 2 + 4) / 3
    assert masked_mean(values, mask, dim=1).tolist() == pytest.approx([1.5, 4.0])
    assert masked_mean(values, torch.zeros(2, 3), dim=1).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    ("values", "mask", "message"),
    [
        (torch.ones(2, 3), torch.zeros(2, 3), "masked_mean: the mask selects no element"),
        (torch.ones(2, 3), torch.ones(3, 2), "shapes must match: values (2, 3), mask (3, 2)"),
    ],
)
def test_masked_mean_rejects_bad_input(values, mask, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        masked_mean(values, mask)


def test_doctests():
    result = doctest.testmod(importlib.import_module("trainer.algo.losses"))
    assert result.attempted > 0 and result.failed == 0

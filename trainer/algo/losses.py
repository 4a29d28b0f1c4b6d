"""Token-level losses of GRPO: the clipped policy loss, KL penalties, entropy, masked means.

Shapes: ``B`` sequences, ``T`` response positions; ``mask`` is 1 on real
response tokens and 0 on padding. Every function is pure.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# exp() of a log-ratio beyond this overflows float32 long before it means anything (verl clamps to ±20 too).
MAX_LOG_RATIO = 20.0


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) != 1:
        described = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
        raise ValueError(f"shapes must match: {described}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Σ values · mask / Σ mask, over ``dim`` (all elements when None).

    Masked-out entries never contribute, even when they hold NaN or Inf. Over all
    elements an empty mask is an error; along ``dim`` an empty slice gives 0.

    >>> masked_mean(torch.tensor([1.0, 2.0, 100.0]), torch.tensor([1.0, 1.0, 0.0])).item()
    1.5
    """
    _check_same_shape(values=values, mask=mask)
    mask = mask.to(values.dtype)
    clean = torch.where(mask > 0, values, torch.zeros_like(values))
    if dim is None:
        count = mask.sum()
        if count.item() == 0:
            raise ValueError("masked_mean: the mask selects no element")
        return (clean * mask).sum() / count
    return (clean * mask).sum(dim=dim) / mask.sum(dim=dim).clamp(min=1.0)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: H = logsumexp(z) − Σ softmax(z)·z.

    ``logits`` (..., V) → (...,). Computed in float32 whatever the input dtype.

    >>> round(entropy_from_logits(torch.zeros(4)).item(), 6)  # uniform over 4: ln 4
    1.386294
    """
    z = logits.float()
    probs = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (probs * z).sum(dim=-1)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip_c: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO clipped surrogate with asymmetric clip and optional dual clip, token-mean over the batch.

    With ratio ρ = exp(logp − old_logp) and advantage A (per sequence, broadcast
    over tokens, or per token)::

        l₁ = −A·ρ
        l₂ = −A·clip(ρ, 1 − clip_low, 1 + clip_high)          # DAPO clip-higher, arXiv 2503.14476
        l  = max(l₁, l₂)                                      # PPO, arXiv 1707.06347
        l  = min(l, −A·c)  where A < 0 and dual_clip_c = c    # dual clip, arXiv 1912.09729 (c = 3)
        loss = Σ l·mask / Σ mask                               # token-mean over every valid token

    The token-mean weights each token equally, so long responses are not
    down-weighted as a per-sequence mean would (DAPO §3.3).

    Shapes: ``logp``, ``old_logp``, ``mask`` (B, T); ``advantages`` (B,) or (B, T).

    Metrics (floats, over valid tokens): ``actor/pg_loss`` the loss;
    ``actor/clipfrac`` the fraction where the clip is active (l₂ > l₁);
    ``actor/clipfrac_lower`` the fraction where the dual clip is active (A < 0
    and max(l₁, l₂) > −A·c; always 0 without dual clip), as in verl.
    """
    if advantages.dim() == 1:
        if advantages.shape[0] != logp.shape[0]:
            shapes = f"advantages {tuple(advantages.shape)}, logp {tuple(logp.shape)}"
            raise ValueError(f"advantages must have one value per row of logp: {shapes}")
        advantages = advantages[:, None].expand_as(logp)
    _check_same_shape(logp=logp, old_logp=old_logp, advantages=advantages, mask=mask)
    if not (0 <= clip_low < 1 and clip_high >= 0):
        raise ValueError(
            f"need 0 <= clip_low < 1 and clip_high >= 0, got clip_low={clip_low}, clip_high={clip_high}"
        )
    if dual_clip_c is not None and not dual_clip_c > 1:
        raise ValueError(f"dual_clip_c must be > 1, got {dual_clip_c}")
    mask = mask.to(logp.dtype)
    tokens = mask.sum()
    if tokens.item() == 0:
        raise ValueError("policy_loss: the mask selects no token")
    advantages = advantages.to(logp.dtype)
    log_ratio = (logp - old_logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)
    clip_active = clipped > unclipped
    dual_active = torch.zeros_like(clip_active)
    if dual_clip_c is not None:
        bound = -advantages * dual_clip_c
        negative = advantages < 0
        dual_active = negative & (per_token > bound)
        per_token = torch.where(negative, torch.minimum(per_token, bound), per_token)
    # where() rather than a product, so that padding holding NaN/Inf cannot leak into the loss.
    loss = torch.where(mask > 0, per_token, torch.zeros_like(per_token)).sum() / tokens
    with torch.no_grad():
        metrics = {
            "actor/pg_loss": float(loss.detach()),
            "actor/clipfrac": float((clip_active.to(mask.dtype) * mask).sum() / tokens),
            "actor/clipfrac_lower": float((dual_active.to(mask.dtype) * mask).sum() / tokens),
        }
    return loss, metrics


def _kl_k1(log_ratio: torch.Tensor) -> torch.Tensor:
    return log_ratio


def _kl_mse(log_ratio: torch.Tensor) -> torch.Tensor:
    return 0.5 * log_ratio.square()


def _kl_k3(log_ratio: torch.Tensor) -> torch.Tensor:
    # r = ref/π = exp(−log_ratio); k3 = r − log r − 1 ≥ 0 (Schulman, "Approximating KL divergence", 2020).
    neg = (-log_ratio).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return torch.exp(neg) - neg - 1.0


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "k1": _kl_k1,
    "mse": _kl_mse,
    "k3": _kl_k3,
}


def kl_penalty(logp: torch.Tensor, ref_logp: torch.Tensor, kind: str = "k3") -> torch.Tensor:
    """Per-token estimate of KL(π ‖ π_ref) from sampled-token log-probs, shape (B, T) → (B, T).

    With d = logp − ref_logp (samples drawn from π):

    - ``k1``: d (unbiased, high variance, can be negative);
    - ``mse``: ½·d² (the "k2" estimator; low variance, biased);
    - ``k3``: exp(−d) + d − 1 (unbiased, always ≥ 0; GRPO, arXiv 2402.03300 eq. 4).

    >>> kl_penalty(torch.tensor([0.0]), torch.tensor([-1.0]), "k1").item()
    1.0
    """
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kind!r}; known: {', '.join(sorted(KL_ESTIMATORS))}")
    _check_same_shape(logp=logp, ref_logp=ref_logp)
    return KL_ESTIMATORS[kind](logp - ref_logp)

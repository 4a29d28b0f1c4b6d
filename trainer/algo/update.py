"""One policy update from one rollout batch (GRPO with the PPO clipped loss).

The update reads top to bottom:

1. old log-probs (and reference log-probs when a KL term is on) are recomputed by
   the policy itself, before any parameter moves — never taken from the rollout
   engine, whose numerics (kernels, precision, sampling-time processing) differ;
2. for each of ``ppo_epochs`` passes, the batch is split into mini-batches: one
   mini-batch = one optimizer step. A single mini-batch covering the whole batch is
   on-policy GRPO; several make the later steps off-policy, which the clipped
   ratio accounts for;
3. each mini-batch runs as micro-batches with gradient accumulation; the loss of a
   micro-batch is weighted by its share of the mini-batch's valid tokens, so the
   accumulated gradient is exactly that of the token-mean over the mini-batch
   (DAPO, arXiv 2503.14476);
4. gradients are clipped to ``max_grad_norm``; a non-finite loss or gradient norm
   skips the optimizer step (gradients dropped) and is counted.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainer.algo.logprobs import DEFAULT_CHUNK_TOKENS, forward_logprobs
from trainer.algo.losses import KL_ESTIMATORS, kl_penalty, policy_loss
from trainer.algo.shard import Shard, UpdateTotals
from trainer.models.freeze import layer_of
from trainer.rollout.batch import collate
from trainer.rollout.types import Rollout


@dataclass(frozen=True)
class UpdateConfig:
    """Hyper-parameters of :func:`update_policy`."""

    # Sequences per optimizer step; None = the whole rollout batch (on-policy, one step per epoch).
    mini_batch_size: int | None = None
    # Sequences per forward/backward; gradients accumulate over the micro-batches of a mini-batch.
    micro_batch_size: int = 8
    # Sequences per forward of the old (and reference) log-prob recompute, which keeps no
    # activations for a backward pass and so fits more; None = micro_batch_size.
    logprob_micro_batch_size: int | None = None
    # Passes over the rollout batch (PPO epochs); > 1 reuses samples off-policy.
    ppo_epochs: int = 1
    # Clip range below 1 of the ratio (PPO, arXiv 1707.06347).
    clip_low: float = 0.2
    # Clip range above 1, larger than clip_low: "clip-higher" (DAPO, arXiv 2503.14476).
    clip_high: float = 0.28
    # Dual-clip bound c for negative advantages (arXiv 1912.09729; 3.0 there); None = off.
    dual_clip_c: float | None = None
    # Weight of the KL penalty to the frozen reference; 0 = off (V-Triune trains without it).
    kl_coef: float = 0.0
    # KL estimator: "k1", "mse" or "k3" (see trainer.algo.losses.kl_penalty).
    kl_kind: str = "k3"
    # Weight of the entropy bonus (subtracted from the loss); 0 = off.
    entropy_coef: float = 0.0
    # Global gradient-norm clip.
    max_grad_norm: float = 1.0
    # Sampling temperature of the rollout; log-probs are computed at the same temperature.
    temperature: float = 1.0
    # Response positions per LM-head chunk in the log-prob forward.
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    # Shuffle the batch before splitting it into mini-batches (only matters with several).
    shuffle: bool = True
    # Seed of that shuffle.
    seed: int = 0
    # Micro-batches of sequences of like length (less padding; see micro_batches).
    group_by_length: bool = False
    # Forward the real tokens of a micro-batch packed into one row (no padding; trainer.algo.packing).
    remove_padding: bool = False
    # Most tokens in a micro-batch, as the forward sees them (see micro_batches); None = no limit.
    micro_batch_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.mini_batch_size is not None and self.mini_batch_size < 1:
            raise ValueError(f"mini_batch_size must be >= 1 or None, got {self.mini_batch_size}")
        if self.micro_batch_size < 1:
            raise ValueError(f"micro_batch_size must be >= 1, got {self.micro_batch_size}")
        if self.micro_batch_tokens is not None and self.micro_batch_tokens < 1:
            raise ValueError(f"micro_batch_tokens must be >= 1 or None, got {self.micro_batch_tokens}")
        if self.logprob_micro_batch_size is not None and self.logprob_micro_batch_size < 1:
            raise ValueError(
                f"logprob_micro_batch_size must be >= 1 or None, got {self.logprob_micro_batch_size}"
            )
        if self.ppo_epochs < 1:
            raise ValueError(f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if not 0 <= self.clip_low < 1:
            raise ValueError(f"clip_low must be in [0, 1), got {self.clip_low}")
        if self.clip_high < 0:
            raise ValueError(f"clip_high must be >= 0, got {self.clip_high}")
        if self.dual_clip_c is not None and not self.dual_clip_c > 1:
            raise ValueError(f"dual_clip_c must be > 1 or None, got {self.dual_clip_c}")
        if self.kl_coef < 0 or self.entropy_coef < 0:
            raise ValueError(
                f"kl_coef and entropy_coef must be >= 0, got {self.kl_coef}, {self.entropy_coef}"
            )
        if self.kl_kind not in KL_ESTIMATORS:
            raise ValueError(f"unknown kl_kind {self.kl_kind!r}; known: {', '.join(sorted(KL_ESTIMATORS))}")
        if not self.max_grad_norm > 0:
            raise ValueError(f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")


# Where a model whose parameters rest elsewhere computes (FSDP with CPU offload): an attribute
# the sharding sets on the model; inputs go there.
COMPUTE_DEVICE = "compute_device"


def _device_and_dtype(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return getattr(model, COMPUTE_DEVICE, None) or param.device, param.dtype


def _chunks(indices: Sequence[int], size: int) -> list[list[int]]:
    return [list(indices[start : start + size]) for start in range(0, len(indices), size)]


def micro_batches(
    indices: Sequence[int],
    size: int,
    lengths: tuple[Sequence[int], Sequence[int]] | None = None,
    *,
    group: bool = True,
    tokens: int | None = None,
    packed: bool = False,
) -> list[list[int]]:
    """``indices`` in micro-batches of at most ``size`` sequences and, with ``tokens``, at most
    that many tokens as the forward sees them (``packed``: the real tokens; else every row as
    wide as the micro-batch's longest prompt plus its longest response). ``lengths`` holds each
    index's prompt and response tokens; a sequence longer than ``tokens`` goes alone.

    With ``lengths`` and ``group``, sequences of like length are put together, in the order of
    the three below that leaves the fewest pad tokens (then the fewest micro-batches). A
    micro-batch is padded to its longest prompt plus its longest response, so grouping removes
    most of the padding; the same sequences are in the same optimiser step either way, and only
    the order of the gradient sums changes. The orders tried, longest first: by prompt then
    response (prompts of a few distinct image sizes), by response (prompts alike), and by the
    sum (both vary).

    >>> micro_batches([0, 1, 2, 3], 2)
    [[0, 1], [2, 3]]
    >>> micro_batches([0, 1, 2, 3], 2, lengths=([10, 10, 10, 10], [5, 90, 7, 80]))
    [[1, 3], [2, 0]]
    >>> micro_batches([0, 1, 2, 3], 2, lengths=([50, 10, 50, 10], [5, 90, 7, 80]))
    [[2, 0], [1, 3]]
    >>> lengths = ([10, 10, 10, 10], [5, 90, 7, 80])
    >>> micro_batches([0, 1, 2, 3], 4, lengths, group=False, tokens=120)
    [[0], [1], [2], [3]]
    >>> micro_batches([0, 1, 2, 3], 4, lengths, group=False, tokens=120, packed=True)
    [[0, 1], [2, 3]]
    """
    if lengths is None:
        if tokens is not None:
            raise ValueError("a token budget needs each sequence's lengths")
        return _chunks(indices, size)
    prompts, responses = lengths
    if group:
        keys = (
            lambda i: (-prompts[i], -responses[i]),
            lambda i: -responses[i],
            lambda i: -(prompts[i] + responses[i]),
        )
        orders = [sorted(indices, key=key) for key in keys]
    else:
        orders = [list(indices)]
    splits = [_split(order, size, prompts, responses, tokens=tokens, packed=packed) for order in orders]

    def padding_then_count(groups: list[list[int]]) -> tuple[int, int]:
        return 0 if packed else padded_tokens(groups, prompts, responses), len(groups)

    return min(splits, key=padding_then_count)


def _split(
    order: Sequence[int],
    size: int,
    prompts: Sequence[int],
    responses: Sequence[int],
    *,
    tokens: int | None,
    packed: bool,
) -> list[list[int]]:
    """``order`` cut in turn into micro-batches of at most ``size`` sequences and ``tokens`` tokens."""
    if tokens is None:
        return _chunks(order, size)
    groups: list[list[int]] = []
    current: list[int] = []
    longest_prompt = longest_response = real = 0
    for index in order:
        prompt, response = max(longest_prompt, prompts[index]), max(longest_response, responses[index])
        grown = real + prompts[index] + responses[index]
        cost = grown if packed else (len(current) + 1) * (prompt + response)
        if current and (len(current) == size or cost > tokens):
            groups.append(current)
            current, prompt, response = [], prompts[index], responses[index]
            grown = prompts[index] + responses[index]
        current.append(index)
        longest_prompt, longest_response, real = prompt, response, grown
    if current:
        groups.append(current)
    return groups


def padded_tokens(
    groups: Sequence[Sequence[int]], prompt_lengths: Sequence[int], response_lengths: Sequence[int]
) -> int:
    """Pad tokens of ``groups`` collated as :func:`trainer.rollout.collate` does (left-padded prompts,
    right-padded responses: every row as wide as the longest prompt plus the longest response).

    >>> padded_tokens([[0, 1]], prompt_lengths=[3, 5], response_lengths=[10, 2])
    10
    """
    total = 0
    for group in groups:
        if not group:
            continue
        width = max(prompt_lengths[i] for i in group) + max(response_lengths[i] for i in group)
        total += sum(width - prompt_lengths[i] - response_lengths[i] for i in group)
    return total


def _sequence_lengths(rollouts: Sequence[Rollout]) -> tuple[list[int], list[int]]:
    return [r.prompt.length for r in rollouts], [r.response_length for r in rollouts]


def _batching_lengths(
    rollouts: Sequence[Rollout], *, group_by_length: bool, micro_batch_tokens: int | None
) -> tuple[list[int], list[int]] | None:
    """Each rollout's prompt and response tokens when :func:`micro_batches` needs them, else None."""
    return _sequence_lengths(rollouts) if group_by_length or micro_batch_tokens is not None else None


def _micro_batches_of(
    indices: Sequence[int],
    size: int,
    lengths: tuple[Sequence[int], Sequence[int]] | None,
    *,
    group_by_length: bool,
    micro_batch_tokens: int | None,
    remove_padding: bool,
) -> list[list[int]]:
    """:func:`micro_batches` under the update's option names."""
    return micro_batches(
        indices, size, lengths, group=group_by_length, tokens=micro_batch_tokens, packed=remove_padding
    )


def _most_over_workers(shard: Shard, count: int) -> int:
    """The largest ``count`` of any worker (every worker calls this with its own)."""
    counts = [0.0] * shard.world
    counts[shard.rank] = float(count)
    return int(max(shard.collective.sum_floats(counts)))


def _pad_rows(rows: Sequence[torch.Tensor], width: int, device: torch.device) -> torch.Tensor:
    out = torch.zeros((len(rows), width), dtype=torch.float32, device=device)
    for row, values in enumerate(rows):
        out[row, : values.shape[0]] = values
    return out


@torch.no_grad()
def recompute_logprobs(
    model: nn.Module,
    rollouts: Sequence[Rollout],
    *,
    pad_token_id: int,
    micro_batch_size: int,
    temperature: float = 1.0,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    rounds: int | None = None,
    group_by_length: bool = False,
    remove_padding: bool = False,
    micro_batch_tokens: int | None = None,
) -> list[torch.Tensor]:
    """Per-rollout log-probs of the responses under ``model`` (no gradient), each (R_i,) float32.

    ``rounds`` (sharded training) runs that many forward passes, repeating the first rollout
    for the passes beyond this worker's own, so that every worker joins every collective.
    ``group_by_length`` forms the micro-batches of sequences of like length (:func:`micro_batches`);
    ``remove_padding`` packs each into one row (:func:`trainer.algo.packing.pack_batch`);
    ``micro_batch_tokens`` bounds the tokens of each.
    """
    device, dtype = _device_and_dtype(model)
    was_training = model.training
    model.eval()
    result: list[torch.Tensor | None] = [None] * len(rollouts)
    batching = {
        "group_by_length": group_by_length,
        "micro_batch_tokens": micro_batch_tokens,
        "remove_padding": remove_padding,
    }
    lengths = _batching_lengths(
        rollouts, group_by_length=group_by_length, micro_batch_tokens=micro_batch_tokens
    )
    chunks = _micro_batches_of(range(len(rollouts)), micro_batch_size, lengths, **batching)
    padding = max(0, (rounds or 0) - len(chunks))
    try:
        for chunk in chunks + [[]] * padding:
            rows = [rollouts[i] for i in chunk] or [rollouts[0]]
            batch = collate(rows, pad_token_id=pad_token_id).to(device, dtype)
            logp, _ = forward_logprobs(
                model,
                batch.model_inputs(),
                batch.response_mask,
                temperature=temperature,
                chunk_tokens=chunk_tokens,
                remove_padding=remove_padding,
            )
            for row, i in enumerate(chunk):
                result[i] = logp[row, : rollouts[i].response_length].float()
    finally:
        model.train(was_training)
    return result  # type: ignore[return-value] - every index is in one chunk


def _layer_grad_squares(model: nn.Module) -> dict[str, float]:
    """Sum of squared gradients over the parameters of each layer bucket (see layer_of).

    A sharded gradient (a DTensor) contributes its local shard; the caller sums over workers.
    """
    squares: dict[str, float] = defaultdict(float)
    for name, param in model.named_parameters():
        grad = param.grad
        if grad is not None:
            local = grad.to_local() if hasattr(grad, "to_local") else grad
            squares[layer_of(name)] += float(local.detach().float().square().sum())
    return dict(squares)


def _layer_grad_norms(model: nn.Module, shard: Shard | None) -> dict[str, float]:
    """``{"grad_norm/<layer>": ‖grad‖₂}``, the same on every worker."""
    squares = _layer_grad_squares(model)
    if shard is not None and shard.collective.lockstep:  # sharded gradients: add the workers' parts
        keys = sorted(squares)
        squares = dict(zip(keys, shard.collective.sum_floats([squares[k] for k in keys]), strict=True))
    return {f"grad_norm/{layer}": math.sqrt(value) for layer, value in squares.items()}


def _current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The LR of the "llm" group when groups are named (trainer.models.param_groups), else of the first."""
    for group in optimizer.param_groups:
        if group.get("name") == "llm":
            return float(group["lr"])
    return float(optimizer.param_groups[0]["lr"])


def _check_inputs(rollouts: Sequence[Rollout], advantages: torch.Tensor, config: UpdateConfig) -> None:
    if len(rollouts) == 0:
        raise ValueError("no rollouts to update on")
    if not isinstance(advantages, torch.Tensor) or tuple(advantages.shape) != (len(rollouts),):
        shape = tuple(advantages.shape) if isinstance(advantages, torch.Tensor) else type(advantages).__name__
        raise ValueError(f"advantages must be a tensor of shape ({len(rollouts)},), got {shape}")
    if not bool(torch.isfinite(advantages).all()):
        raise ValueError("advantages must be finite")


def update_policy(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollouts: Sequence[Rollout],
    advantages: torch.Tensor,
    *,
    pad_token_id: int,
    config: UpdateConfig | None = None,
    ref_model: nn.Module | None = None,
) -> dict[str, float]:
    """Update ``model`` on one rollout batch; return the step's metrics.

    ``advantages`` (N,) holds one value per rollout (GRPO: the same for every
    token of a response). ``ref_model`` is needed iff ``config.kl_coef > 0``.
    The LR scheduler is not stepped here (see trainer.algo.schedule).

    Metrics: ``actor/pg_loss``, ``actor/clipfrac``, ``actor/clipfrac_lower``,
    ``actor/entropy`` and ``actor/ppo_kl`` (mean of old − new log-prob, the drift
    of the policy during the update) are token-weighted means over every
    micro-batch; ``actor/kl`` (to the reference, only with ``ref_model``) likewise;
    ``actor/grad_norm`` (before clipping) and ``grad_norm/<vision|language>.<layer>``
    are means over the optimizer steps taken (absent when every step was skipped);
    ``actor/lr`` is the LR used; ``actor/optimizer_steps`` and
    ``actor/skipped_steps`` count steps taken and skipped (non-finite loss or
    gradient norm).
    """
    totals = update_policy_shard(
        model, optimizer, rollouts, advantages, pad_token_id=pad_token_id, config=config, ref_model=ref_model
    )
    return totals.metrics()


def update_policy_shard(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rollouts: Sequence[Rollout],
    advantages: torch.Tensor,
    *,
    pad_token_id: int,
    config: UpdateConfig | None = None,
    ref_model: nn.Module | None = None,
    shard: Shard | None = None,
) -> UpdateTotals:
    """:func:`update_policy` on this worker's share (``shard``; None: the whole batch, one process).

    With a shard, ``rollouts``/``advantages`` are the worker's own (in global order); every
    worker must call this with the same ``config`` and the same ``shard`` apart from the rank.
    Returns sums for :func:`trainer.algo.shard.merge_totals`.
    """
    config = config or UpdateConfig()
    _check_inputs(rollouts, advantages, config)
    if config.kl_coef > 0 and ref_model is None:
        raise ValueError("kl_coef > 0 needs a ref_model")
    if shard is None:
        lengths = tuple(r.response_length for r in rollouts)
        owner = tuple(0 for _ in rollouts)
        local = {g: g for g in range(len(rollouts))}
        rank, world = 0, 1
    else:
        lengths, owner, local = shard.lengths, shard.owner, shard.local_index()
        rank, world = shard.rank, shard.world
        if len(local) != len(rollouts):
            raise ValueError(f"the shard assigns {len(local)} rollouts to rank {rank}, got {len(rollouts)}")
    lockstep = shard is not None and shard.collective.lockstep
    loss_scale = shard.collective.loss_scale if shard is not None else 1.0
    owns_step = shard is not None and shard.collective.owns_step

    def micro_rounds(indices: Sequence[int], size: int) -> int:
        """Passes of ``size`` sequences the busiest worker needs for ``indices`` (global)."""
        counts = [sum(1 for g in indices if owner[g] == r) for r in range(world)]
        return max(math.ceil(c / size) for c in counts)

    device, dtype = _device_and_dtype(model)
    logprob_micro = config.logprob_micro_batch_size or config.micro_batch_size
    recompute = {"pad_token_id": pad_token_id, "micro_batch_size": logprob_micro}
    recompute |= {"temperature": config.temperature, "chunk_tokens": config.chunk_tokens}
    batching = {
        "group_by_length": config.group_by_length,
        "micro_batch_tokens": config.micro_batch_tokens,
        "remove_padding": config.remove_padding,
    }
    recompute |= batching
    sequence_lengths = _batching_lengths(
        rollouts, group_by_length=config.group_by_length, micro_batch_tokens=config.micro_batch_tokens
    )
    if lockstep and config.micro_batch_tokens is not None:
        # token budgets cut each worker's share its own way: every worker runs the most passes
        assert shard is not None
        own = _micro_batches_of(range(len(rollouts)), logprob_micro, sequence_lengths, **batching)
        recompute["rounds"] = _most_over_workers(shard, len(own))
    elif lockstep:
        recompute["rounds"] = micro_rounds(range(len(lengths)), logprob_micro)
    old_logps = recompute_logprobs(model, rollouts, **recompute)
    ref_logps = recompute_logprobs(ref_model, rollouts, **recompute) if ref_model is not None else None

    totals = UpdateTotals(sums=defaultdict(float), step_sums=defaultdict(float))
    totals.lr = _current_lr(optimizer)
    generator = torch.Generator().manual_seed(config.seed)
    mini_size = config.mini_batch_size or len(lengths)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    was_training = model.training
    model.train()
    try:
        for _ in range(config.ppo_epochs):
            several = mini_size < len(lengths)
            if config.shuffle and several:
                order = torch.randperm(len(lengths), generator=generator).tolist()
            else:
                order = list(range(len(lengths)))
            for mini in _chunks(order, mini_size):
                mini_tokens = float(sum(lengths[g] for g in mini))
                mine = [local[g] for g in mini if owner[g] == rank]
                micros = _micro_batches_of(mine, config.micro_batch_size, sequence_lengths, **batching)
                if lockstep:
                    assert shard is not None
                    if config.micro_batch_tokens is None:
                        rounds = micro_rounds(mini, config.micro_batch_size)
                    else:
                        rounds = _most_over_workers(shard, len(micros))
                    micros += [[]] * (rounds - len(micros))
                optimizer.zero_grad(set_to_none=True)
                finite = True
                for micro in micros:
                    # an empty micro-batch (sharded training) repeats rollout 0 with weight 0
                    rows = micro or [0]
                    batch = collate([rollouts[i] for i in rows], pad_token_id=pad_token_id).to(device, dtype)
                    mask = batch.response_mask
                    width = mask.shape[1]
                    old = _pad_rows([old_logps[i] for i in rows], width, device)
                    logp, entropy = forward_logprobs(
                        model,
                        batch.model_inputs(),
                        mask,
                        temperature=config.temperature,
                        chunk_tokens=config.chunk_tokens,
                        remove_padding=config.remove_padding,
                    )
                    micro_adv = advantages[rows].to(device=device, dtype=torch.float32)
                    pg_loss, pg_metrics = policy_loss(
                        logp, old, micro_adv, mask, config.clip_low, config.clip_high, config.dual_clip_c
                    )
                    micro_tokens = float(mask.sum())
                    entropy_mean = (entropy * mask).sum() / micro_tokens
                    loss = pg_loss
                    if config.entropy_coef > 0:
                        loss = loss - config.entropy_coef * entropy_mean
                    if ref_logps is not None:
                        ref = _pad_rows([ref_logps[i] for i in rows], width, device)
                        kl = (kl_penalty(logp, ref, config.kl_kind) * mask).sum() / micro_tokens
                        loss = loss + config.kl_coef * kl
                    weight = micro_tokens / mini_tokens * loss_scale if micro else 0.0
                    if not bool(torch.isfinite(loss)):
                        finite = False
                        if not lockstep:
                            break
                        loss = loss.nan_to_num(0.0, 0.0, 0.0)  # a sharded backward must still run
                        if owns_step:  # NaN gradients: the sharding's own step skips, and drops them
                            loss = loss * math.nan
                    (loss * weight).backward()
                    if not micro or not finite:
                        continue
                    if ref_logps is not None:
                        totals.sums["actor/kl"] += float(kl.detach()) * micro_tokens
                    for key, value in pg_metrics.items():
                        totals.sums[key] += value * micro_tokens
                    totals.sums["actor/entropy"] += float(entropy_mean.detach()) * micro_tokens
                    totals.sums["actor/ppo_kl"] += float(((old - logp.detach()) * mask).sum())
                    totals.tokens += micro_tokens
                if shard is not None:
                    shard.collective.sum_gradients(params)
                    finite = shard.collective.all_true(finite)
                if owns_step:  # DeepSpeed ZeRO: the gradients live in its partitions (no per-layer norms)
                    assert shard is not None
                    totals.lr = _current_lr(optimizer)
                    owned_norm = shard.collective.owned_step(finite)
                    if owned_norm is None:
                        totals.skipped += 1
                    else:
                        totals.steps += 1
                        totals.step_sums["actor/grad_norm"] += owned_norm
                    continue
                if finite:
                    layer_norms = _layer_grad_norms(model, shard)
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm))
                    finite = math.isfinite(grad_norm)
                if not finite:
                    optimizer.zero_grad(set_to_none=True)
                    totals.skipped += 1
                    continue
                totals.lr = _current_lr(optimizer)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                totals.steps += 1
                totals.step_sums["actor/grad_norm"] += grad_norm
                for key, value in layer_norms.items():
                    totals.step_sums[key] += value
    finally:
        model.train(was_training)
    totals.sums, totals.step_sums = dict(totals.sums), dict(totals.step_sums)
    return totals

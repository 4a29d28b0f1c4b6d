"""The training forward: per-token log-probs and entropies of the response tokens.

Only the response positions go through the LM head, in chunks of
``chunk_tokens`` positions. With gradients on, each chunk is checkpointed: the
backward pass recomputes its (chunk, vocab) logits instead of keeping them, so
peak memory holds one chunk of logits rather than (B, R, vocab) — the largest
tensor of the step for a 150k-token vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from trainer.algo.losses import entropy_from_logits
from trainer.algo.packing import pack_batch

DEFAULT_CHUNK_TOKENS = 1024


def _chunk(
    lm_head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    logits = lm_head(hidden).float() / temperature  # (n, V)
    logp = F.log_softmax(logits, dim=-1).gather(-1, targets[:, None])[:, 0]
    return logp, entropy_from_logits(logits)


def token_logprobs(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    remove_padding: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probs and entropies of the response tokens under ``model``.

    ``batch`` holds the forward's inputs in the layout of
    :func:`trainer.rollout.collate`: ``input_ids``/``attention_mask``/
    ``mm_token_type_ids`` (B, P + R) whose last R columns are the response, plus
    ``pixel_values`` and ``image_grid_thw`` when there are images.
    ``mm_token_type_ids`` must cover prompt and response: Qwen2-VL refuses images
    without it and Qwen2.5-VL silently falls back to 1-D positions.
    ``response_mask`` (B, R) marks the real response tokens.

    ``remove_padding`` runs the forward on the real tokens only, packed into one row
    (:func:`trainer.algo.packing.pack_batch`); the result is the same up to float rounding.

    Returns ``(logp, entropy)``, both (B, R) float32, 0 on padding:
    logp[b, t] = log softmax(z / temperature)[y] where z are the logits at column
    P + t − 1 and y the token at column P + t (the temperature matches the one the
    rollout sampled with, as verl does); entropy is that distribution's entropy.
    """
    input_ids = batch["input_ids"]
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be (B, L), got shape {tuple(input_ids.shape)}")
    size, width = input_ids.shape
    if response_mask.dim() != 2 or response_mask.shape[0] != size:
        raise ValueError(f"response_mask must be ({size}, R), got shape {tuple(response_mask.shape)}")
    response_width = response_mask.shape[1]
    if not 0 < response_width < width:
        raise ValueError(
            f"response width {response_width} must be in [1, {width - 1}] for inputs of width {width}"
        )
    if "image_grid_thw" in batch and "mm_token_type_ids" not in batch:
        raise ValueError("mm_token_type_ids is required with images (M-RoPE positions need it)")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if chunk_tokens < 1:
        raise ValueError(f"chunk_tokens must be >= 1, got {chunk_tokens}")

    config = getattr(model, "config", None)
    placeholders = [getattr(config, key, None) for key in ("image_token_id", "video_token_id")]
    placeholders = [token for token in placeholders if token is not None]
    forbidden = torch.tensor(placeholders, device=input_ids.device)
    if placeholders and bool(torch.isin(input_ids[:, width - response_width :], forbidden).any()):
        raise ValueError(
            "a response contains an image/video placeholder token; "
            "replace it first (trainer.rollout.replace_tokens)"
        )

    if remove_padding:
        packed = pack_batch(model, batch)
        outputs = model.model(**packed.inputs, use_cache=False)
        # the packed column of the hidden state that predicts each response token (0 on padding,
        # whose values are masked below)
        columns = packed.flat_index[:, width - response_width - 1 : width - 1].clamp(min=0)
        hidden = outputs.last_hidden_state[0, columns]  # (B, R, H)
    else:
        outputs = model.model(**batch, use_cache=False)
        hidden = outputs.last_hidden_state[:, width - response_width - 1 : width - 1]  # (B, R, H)
    targets = input_ids[:, width - response_width :]  # (B, R)
    flat_hidden = hidden.reshape(size * response_width, -1)
    flat_targets = targets.reshape(-1)
    lm_head = model.get_output_embeddings()
    logps, entropies = [], []
    for start in range(0, flat_targets.shape[0], chunk_tokens):
        part = slice(start, start + chunk_tokens)
        if torch.is_grad_enabled():
            logp, entropy = checkpoint(
                _chunk, lm_head, flat_hidden[part], flat_targets[part], temperature, use_reentrant=False
            )
        else:
            logp, entropy = _chunk(lm_head, flat_hidden[part], flat_targets[part], temperature)
        logps.append(logp)
        entropies.append(entropy)
    valid = response_mask > 0
    logp = torch.cat(logps).reshape(size, response_width).masked_fill(~valid, 0.0)
    entropy = torch.cat(entropies).reshape(size, response_width).masked_fill(~valid, 0.0)
    return logp, entropy


# A sharded policy (FSDP) runs token_logprobs through this method of its own, registered as a
# forward method, so that the root module's parameters (embeddings, LM head) are gathered.
SHARDED_LOGPROBS = "sharded_token_logprobs"


def forward_logprobs(
    model: nn.Module,
    batch: Mapping[str, torch.Tensor],
    response_mask: torch.Tensor,
    *,
    temperature: float = 1.0,
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
    remove_padding: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`token_logprobs`, through the model's sharded forward method when it has one."""
    options = {"temperature": temperature, "chunk_tokens": chunk_tokens, "remove_padding": remove_padding}
    method = getattr(model, SHARDED_LOGPROBS, None)
    if method is not None:
        return method(batch, response_mask, **options)
    return token_logprobs(model, batch, response_mask, **options)

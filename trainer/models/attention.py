"""``sdpa_varlen``: torch's SDPA run sequence by sequence over a packed row (``algo.remove_padding``).

A packed row (:mod:`trainer.algo.packing`) holds several sequences end to end. Through plain
``sdpa`` it is attended with a block-diagonal mask: every query is scored against the whole
row, ``T²`` per layer for ``T`` tokens, where the sequences need only ``Σ Lᵢ²``. Flash
attention's variable-length kernels do the latter on a GPU; this function does it with torch's
own SDPA, one causal call per sequence, so a CPU (or a GPU without flash-attn) gets the same
saving. Sequences are found as transformers finds them: the text positions passed to the
attention restart (step ≠ 1) where a new sequence begins. Anything else (a padded batch,
generation with a cache, a row of one sequence) goes to ``sdpa`` unchanged, so a model can
keep this implementation for every forward. Its mask function builds no mask for a row of one
batch without a padding mask, the packed row's case: the (T, T) block-diagonal mask that sdpa
needs would be thrown away here, and building it took a tenth of the tiny model's update.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.functional import scaled_dot_product_attention
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import repeat_kv, sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

SDPA_VARLEN = "sdpa_varlen"


def sequence_lengths(position_ids: torch.Tensor) -> list[int]:
    """Lengths of the sequences of one packed row, from its (1, T) text positions.

    >>> sequence_lengths(torch.tensor([[0, 1, 2, 0, 1, 0, 1, 2, 3]]))
    [3, 2, 4]
    """
    positions = position_ids[0]
    starts = torch.nonzero(positions[1:] - positions[:-1] != 1).flatten() + 1
    bounds = [0, *starts.tolist(), positions.shape[0]]
    return [end - start for start, end in zip(bounds, bounds[1:], strict=False)]


def sdpa_varlen_attention(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function of :data:`SDPA_VARLEN` (transformers' attention-interface signature).

    ``query`` (B, H, T, D), ``key``/``value`` (B, H_kv, T_kv, D); returns (B, T, H, D).
    """
    position_ids = kwargs.get("position_ids")
    packed = (
        query.shape[0] == 1
        and position_ids is not None
        and position_ids.dim() == 2
        and position_ids.shape[-1] == query.shape[2] == key.shape[2]
        and getattr(module, "is_causal", True)
    )
    lengths = sequence_lengths(position_ids) if packed else []
    if len(lengths) < 2:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    groups = getattr(module, "num_key_value_groups", 1)
    if groups > 1:
        key, value = repeat_kv(key, groups), repeat_kv(value, groups)
    outputs = [
        scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling)
        for q, k, v in zip(
            query.split(lengths, dim=2), key.split(lengths, dim=2), value.split(lengths, dim=2), strict=True
        )
    ]
    return torch.cat(outputs, dim=2).transpose(1, 2).contiguous(), None


def sdpa_varlen_mask(
    batch_size: int,
    q_length: int,
    kv_length: int,
    *args: Any,
    attention_mask: torch.Tensor | None = None,
    local_size: int | None = None,
    **kwargs: Any,
) -> torch.Tensor | None:
    """The mask function of :data:`SDPA_VARLEN`: none for one causal row without a padding mask
    (a packed row, or a single sequence, which SDPA's ``is_causal`` covers), else sdpa's."""
    if batch_size == 1 and attention_mask is None and q_length == kv_length and local_size is None:
        return None
    sdpa_mask = ALL_MASK_ATTENTION_FUNCTIONS["sdpa"]
    return sdpa_mask(
        batch_size, q_length, kv_length, *args, attention_mask=attention_mask, local_size=local_size, **kwargs
    )


def register() -> None:
    """Make :data:`SDPA_VARLEN` a name ``set_attn_implementation`` accepts."""
    AttentionInterface.register(SDPA_VARLEN, sdpa_varlen_attention)
    AttentionMaskInterface.register(SDPA_VARLEN, sdpa_varlen_mask)

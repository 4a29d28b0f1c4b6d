"""Module groups of Qwen2-VL / Qwen2.5-VL: freezing, per-group learning rates, per-layer names.

Three groups, as in V-Triune's training recipe (vision tower and connector frozen
by default, per-module learning rates):

- ``vit``: the vision tower (patch embedding and blocks) — ``visual.*`` except the merger;
- ``connector``: the patch merger that projects vision features to the LLM width — ``visual.merger.*``;
- ``llm``: everything else (token embeddings, decoder layers, final norm, LM head).

Parameter names are matched by pattern, so both the transformers 5 layout
(``model.visual.*``, ``model.language_model.layers.*``) and the older one
(``visual.*``, ``model.layers.*``) work.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

GROUPS = ("vit", "connector", "llm")

_CONNECTOR = re.compile(r"(?:^|\.)visual\.(?:merger|deepstack_merger_list)\.")
_VISION = re.compile(r"(?:^|\.)visual\.")
_VISION_BLOCK = re.compile(r"(?:^|\.)visual\.blocks\.(\d+)\.")
_VISION_PART = re.compile(r"(?:^|\.)visual\.([A-Za-z_]+)")
_LANGUAGE_LAYER = re.compile(r"(?:^|\.)(?:language_model|model)\.layers\.(\d+)\.")
_LANGUAGE_PART = re.compile(r"(?:^|\.)(embed_tokens|norm|lm_head)(?:\.|$)")


def group_of(param_name: str) -> str:
    """The group ("vit", "connector" or "llm") a parameter belongs to.

    >>> group_of("model.visual.merger.mlp.0.weight"), group_of("model.visual.blocks.0.attn.qkv.weight")
    ('connector', 'vit')
    >>> group_of("lm_head.weight")
    'llm'
    """
    if _CONNECTOR.search(param_name):
        return "connector"
    if _VISION.search(param_name):
        return "vit"
    return "llm"


def layer_of(param_name: str) -> str:
    """The per-layer bucket of a parameter, for ``grad_norm/<bucket>`` metrics.

    Vision blocks give ``vision.<i>``, decoder layers ``language.<i>``; the other
    parts are named after their module: ``vision.patch_embed``, ``connector.merger``,
    ``language.embed_tokens``, ``language.norm``, ``language.lm_head``; anything else
    ``other``.

    >>> layer_of("model.language_model.layers.3.mlp.up_proj.weight")
    'language.3'
    >>> layer_of("model.visual.blocks.0.norm1.weight"), layer_of("model.visual.merger.ln_q.weight")
    ('vision.0', 'connector.merger')
    """
    if match := _VISION_BLOCK.search(param_name):
        return f"vision.{match.group(1)}"
    if _CONNECTOR.search(param_name):
        return "connector.merger"
    if match := _VISION_PART.search(param_name):
        return f"vision.{match.group(1)}"
    if match := _LANGUAGE_LAYER.search(param_name):
        return f"language.{match.group(1)}"
    if match := _LANGUAGE_PART.search(param_name):
        return f"language.{match.group(1)}"
    return "other"


def _check_groups(groups: Iterable[str]) -> set[str]:
    if isinstance(groups, str):
        raise TypeError(f"groups must be a collection of group names, not the string {groups!r}")
    names = set(groups)
    unknown = sorted(names - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown module group(s) {', '.join(unknown)}; known: {', '.join(GROUPS)}")
    return names


def module_groups(model: nn.Module) -> dict[str, list[tuple[str, nn.Parameter]]]:
    """``{group: [(name, parameter), ...]}`` for every group (tied parameters listed once)."""
    grouped: dict[str, list[tuple[str, nn.Parameter]]] = {name: [] for name in GROUPS}
    for name, param in model.named_parameters():
        grouped[group_of(name)].append((name, param))
    return grouped


def freeze(model: nn.Module, groups: Iterable[str]) -> dict[str, int]:
    """Make exactly ``groups`` frozen and every other group trainable.

    Declarative rather than cumulative: ``freeze(model, [])`` unfreezes everything.
    Returns the number of trainable parameters per group.
    """
    frozen = _check_groups(groups)
    trainable: dict[str, int] = {}
    for group, params in module_groups(model).items():
        for _, param in params:
            param.requires_grad_(group not in frozen)
        trainable[group] = sum(p.numel() for _, p in params if p.requires_grad)
    return trainable


def param_groups(
    model: nn.Module, lrs: dict[str, float], *, weight_decay: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups ``[{"name", "params", "lr"}, ...]``, one per group with trainable weights.

    Frozen groups are left out. Each trainable group needs a learning rate in
    ``lrs``; keys that are not group names are an error (a typo would otherwise
    silently train with the wrong rate).
    """
    unknown = sorted(set(lrs) - set(GROUPS))
    if unknown:
        raise ValueError(f"unknown module group(s) {', '.join(unknown)} in lrs; known: {', '.join(GROUPS)}")
    result: list[dict[str, Any]] = []
    for group, params in module_groups(model).items():
        trainable: list[torch.Tensor] = [p for _, p in params if p.requires_grad]
        if not trainable:
            continue
        if group not in lrs:
            raise ValueError(f"group {group!r} has trainable parameters but no learning rate in lrs")
        lr = lrs[group]
        if not (isinstance(lr, int | float) and lr >= 0):
            raise ValueError(f"learning rate of {group!r} must be a number >= 0, got {lr!r}")
        entry: dict[str, Any] = {"name": group, "params": trainable, "lr": float(lr)}
        if weight_decay is not None:
            entry["weight_decay"] = weight_decay
        result.append(entry)
    if not result:
        raise ValueError("no trainable parameters: every module group is frozen")
    return result

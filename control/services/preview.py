"""Scoring a pasted response for the preview page, with the trainer's own verifiers and a time limit."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

PREVIEW_TIMEOUT_S = 5.0

_pool = None
_lock = threading.Lock()


def _get_pool():
    """One small reward pool per web process: hostile LaTeX must not hang a request.

    The pool closes itself when the process exits (``RewardPool`` registers its own finalizer).
    """
    global _pool
    with _lock:
        if _pool is None:
            from trainer.rewards import RewardPool

            _pool = RewardPool(workers=1, timeout_s=PREVIEW_TIMEOUT_S)
            _pool.__enter__()
        return _pool


def score_response(
    *,
    response: str,
    reward_model: Mapping[str, Any],
    step: int,
    total_steps: int,
    image_size: tuple[int, int] | None,
) -> dict:
    """Every reward component of ``response``, plus the IoU threshold and an error (timeout) if any."""
    from trainer.rewards import RewardRequest, iou_threshold

    request = RewardRequest(
        response=response,
        reward_model=dict(reward_model),
        step=step,
        total_steps=total_steps,
        image_size=image_size,
        data_source="preview",
    )
    (result,) = _get_pool().score([request])
    return {
        "rewards": result.rewards,
        "error": result.error,
        "iou_threshold": iou_threshold(step, total_steps),
    }


def boxes_of(reward_model: Mapping[str, Any]) -> list[dict]:
    """Ground-truth boxes of a detection/grounding sample, for drawing on its image."""
    if reward_model.get("verifier") != "detection":
        return []
    from trainer.rewards.boxes import extract_boxes

    boxes = extract_boxes(str(reward_model.get("ground_truth", "")))
    if boxes is None:
        return []
    return [
        {"bbox_2d": [float(c) for c in box], "label": label}
        for box, label in zip(boxes.xyxy.tolist(), boxes.labels, strict=True)
    ]

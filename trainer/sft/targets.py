"""The response a supervised warm-start teaches for a sample: its ground truth, in rewarded form.

A target is what the sample's verifier gives full marks to (DESIGN.md §4), so that a model
warm-started on it answers in the layout the RL rewards score: for ``mathverify``
``<think>\\n…\\n</think>\\n<answer>\\n\\boxed{…}\\n</answer>`` (all four format tags once, the
answer boxed), for ``detection`` the same tags around the ground-truth box list, with the
coordinates in the frame the model writes (``data.box_coordinates``: pixels of the image the
model saw, or V-Triune's 0–1000 scale). Writers are chosen by verifier name from a registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from trainer.rewards.boxes import extract_boxes

BoxCoordinates = Literal["pixel", "relative1000"]
# The reasoning a warm-start teaches: one short sentence, so that a tiny model spends its few
# tokens on the answer; RL may grow it.
THINK_TEXT = "Let me look at the image."

TargetWriter = Callable[[Mapping[str, Any], "tuple[int, int] | None", BoxCoordinates], str]
_WRITERS: dict[str, TargetWriter] = {}


def register_target(verifier: str) -> Callable[[TargetWriter], TargetWriter]:
    """Register the target writer of ``verifier``; registering a name twice raises."""

    def decorator(writer: TargetWriter) -> TargetWriter:
        if verifier in _WRITERS:
            raise ValueError(f"a target writer for verifier {verifier!r} is already registered")
        _WRITERS[verifier] = writer
        return writer

    return decorator


def target_verifiers() -> list[str]:
    """Verifiers that have a target writer, sorted."""
    return sorted(_WRITERS)


def tagged(answer: str) -> str:
    """``answer`` inside the think/answer layout every verifier's format reward counts.

    >>> tagged("\\\\boxed{4}")
    '<think>\\nLet me look at the image.\\n</think>\\n<answer>\\n\\\\boxed{4}\\n</answer>'
    """
    return f"<think>\n{THINK_TEXT}\n</think>\n<answer>\n{answer}\n</answer>"


@register_target("mathverify")
def math_target(
    reward_model: Mapping[str, Any], image_size: tuple[int, int] | None, frame: BoxCoordinates
) -> str:
    """The ground truth (``\\boxed{…}``; a bare answer is boxed) in the tagged layout.

    >>> math_target({"ground_truth": "\\\\boxed{7}"}, None, "pixel").split("\\n")[4]
    '\\\\boxed{7}'
    """
    truth = reward_model.get("ground_truth")
    if not isinstance(truth, str) or not truth.strip():
        raise ValueError(f"ground_truth must be a non-empty string, got {truth!r:.80}")
    truth = truth.strip()
    return tagged(truth if "\\boxed{" in truth else f"\\boxed{{{truth}}}")


def _pixel(value: float, size: int) -> int:
    """A 0–1000 coordinate → the nearest pixel of a ``size``-pixel side."""
    return int(round(value * size / 1000.0))


@register_target("detection")
def detection_target(
    reward_model: Mapping[str, Any], image_size: tuple[int, int] | None, frame: BoxCoordinates
) -> str:
    """The ground-truth boxes, V-Triune's list syntax, in pixels of ``image_size`` or on 0–1000.

    >>> detection_target({"ground_truth": "<answer>\\n[{'bbox_2d': [0, 500, 250, 1000], 'label': 'dog'}]"
    ...                   "\\n</answer>"}, (112, 56), "pixel").split("\\n")[4]
    "[{'bbox_2d': [0, 28, 28, 56], 'label': 'dog'}]"
    """
    truth = reward_model.get("ground_truth")
    boxes = extract_boxes(truth) if isinstance(truth, str) else None
    if boxes is None:
        raise ValueError(f"ground_truth has no valid box list: {truth!r:.80}")
    if frame == "pixel" and image_size is None:
        raise ValueError("box_coordinates 'pixel' needs the size of the image the model sees")
    items = []
    for (x1, y1, x2, y2), label in zip(boxes.xyxy.tolist(), boxes.labels, strict=True):
        if frame == "pixel":
            assert image_size is not None
            width, height = image_size
            coords = [_pixel(x1, width), _pixel(y1, height), _pixel(x2, width), _pixel(y2, height)]
        else:
            coords = [int(x1), int(y1), int(x2), int(y2)]
        items.append(
            f"{{'bbox_2d': [{coords[0]}, {coords[1]}, {coords[2]}, {coords[3]}], 'label': '{label}'}}"
        )
    return tagged("[" + ", ".join(items) + "]")


def target_response(
    reward_model: Mapping[str, Any],
    *,
    image_size: tuple[int, int] | None = None,
    box_coordinates: BoxCoordinates = "pixel",
) -> str:
    """The response to teach for a sample with this ``reward_model``.

    ``image_size`` is (width, height) of the image as the model sees it (after the processor's
    resize). Raises ``ValueError`` for a verifier without a writer or an unusable ground truth.
    """
    if not isinstance(reward_model, Mapping):
        raise ValueError(f"reward_model must be a mapping, got {type(reward_model).__name__}")
    verifier = reward_model.get("verifier")
    if not isinstance(verifier, str) or verifier not in _WRITERS:
        raise ValueError(
            f"no warm-start target for verifier {verifier!r:.60}; known: {', '.join(target_verifiers())}"
        )
    if box_coordinates not in ("pixel", "relative1000"):
        raise ValueError(f"box_coordinates must be pixel or relative1000, got {box_coordinates!r:.60}")
    return _WRITERS[verifier](reward_model, image_size, box_coordinates)

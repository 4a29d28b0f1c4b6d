"""Warm-start targets: the ground truth in the layout the verifiers give full marks to."""

from __future__ import annotations

import pytest

from trainer.rewards import compute_reward
from trainer.sft import register_target, target_response, target_verifiers

THINK = "<think>\nLet me look at the image.\n</think>\n"
DETECTION_GT = (
    "<answer>\n[{'bbox_2d': [0, 500, 250, 1000], 'label': 'dog'}, "
    "{'bbox_2d': [100, 100, 300, 200], 'label': 'Cat'}]\n</answer>"
)
DETECTION_RM = {
    "verifier": "detection",
    "ground_truth": DETECTION_GT,
    "verifier_parm": {
        "det_verifier_normalized": True,
        "det_reward_ratio": {"iou_max_label_first": 1.0, "iou_completeness": 0.3},
    },
}


@pytest.mark.parametrize(
    ("truth", "answer"),
    [
        ("\\boxed{7}", "\\boxed{7}"),
        ("42", "\\boxed{42}"),
        ("  \\boxed{\\frac{1}{2}} ", "\\boxed{\\frac{1}{2}}"),
    ],
)
def test_math_target(truth: str, answer: str) -> None:
    reward_model = {"verifier": "mathverify", "ground_truth": truth}
    response = target_response(reward_model)
    assert response == f"{THINK}<answer>\n{answer}\n</answer>"
    rewards = compute_reward(response, reward_model)
    assert (rewards["accuracy_reward"], rewards["format_reward"], rewards["final_reward"]) == (1.0, 1.0, 1.0)


@pytest.mark.parametrize(
    ("frame", "size", "boxes"),
    [
        # 0..1000 → pixels of a 112 x 56 image: x·112/1000, y·56/1000, rounded
        (
            "pixel",
            (112, 56),
            "[{'bbox_2d': [0, 28, 28, 56], 'label': 'dog'}, {'bbox_2d': [11, 6, 34, 11], 'label': 'cat'}]",
        ),
        (
            "relative1000",
            None,
            "[{'bbox_2d': [0, 500, 250, 1000], 'label': 'dog'}, "
            "{'bbox_2d': [100, 100, 300, 200], 'label': 'cat'}]",
        ),
    ],
)
def test_detection_target(frame: str, size: tuple[int, int] | None, boxes: str) -> None:
    response = target_response(DETECTION_RM, image_size=size, box_coordinates=frame)  # type: ignore[arg-type]
    assert response == f"{THINK}<answer>\n{boxes}\n</answer>"


def test_a_pixel_target_is_scored_as_the_ground_truth() -> None:
    size = (224, 224)  # 224/1000 scale: pixels map back onto the same 0..1000 integers
    response = target_response(DETECTION_RM, image_size=size, box_coordinates="pixel")
    rewards = compute_reward(response, DETECTION_RM, image_size=size, iou_schedule=0.5)
    assert rewards["format_reward"] == 1.0
    assert rewards["accuracy_reward"] == pytest.approx(1.0, abs=0.05)  # pixel rounding costs a little IoU


@pytest.mark.parametrize(
    ("reward_model", "kwargs", "message"),
    [
        ({"verifier": "nope"}, {}, "no warm-start target for verifier 'nope'; known: detection, mathverify"),
        ({}, {}, "no warm-start target for verifier None; known: detection, mathverify"),
        (
            {"verifier": "mathverify", "ground_truth": ""},
            {},
            "ground_truth must be a non-empty string, got ''",
        ),
        ({"verifier": "mathverify", "ground_truth": 3}, {}, "ground_truth must be a non-empty string, got 3"),
        (
            {"verifier": "detection", "ground_truth": "<answer>[]</answer>"},
            {},
            "ground_truth has no valid box list",
        ),
        (
            {"verifier": "detection", "ground_truth": DETECTION_GT},
            {"box_coordinates": "pixel"},
            "box_coordinates 'pixel' needs the size of the image the model sees",
        ),
        (
            {"verifier": "mathverify", "ground_truth": "1"},
            {"box_coordinates": "normalized"},
            "box_coordinates must be pixel or relative1000, got 'normalized'",
        ),
        ("<script>", {}, "reward_model must be a mapping, got str"),
    ],
)
def test_unusable_samples_are_refused(reward_model: object, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as error:
        target_response(reward_model, **kwargs)  # type: ignore[arg-type]
    assert str(error.value).startswith(message)


def test_registering_a_verifier_twice_raises() -> None:
    assert target_verifiers() == ["detection", "mathverify"]
    with pytest.raises(ValueError, match="a target writer for verifier 'mathverify' is already registered"):
        register_target("mathverify")(lambda rm, size, frame: "")

"""Which coordinate frame the detection reward scores in, the requests built, the scorer registry."""

from __future__ import annotations

import pytest

from trainer.config import RemoteRewardConfig, RewardConfig
from trainer.engine.scoring import (
    build_scorer,
    register_scorer,
    reward_model_for_coordinates,
    reward_request,
    scorer_name,
    scorer_names,
)
from trainer.rewards import compute_reward

from .factories import DET_RM, MATH_RM


@pytest.mark.parametrize(
    ("parm", "frame", "expected"),
    [
        (None, "pixel", True),
        (None, "relative1000", False),
        ({"det_verifier_normalized": False}, "pixel", True),
        ({"det_verifier_normalized": True}, "relative1000", False),
    ],
)
def test_the_config_frame_decides_normalisation(parm, frame, expected) -> None:
    reward_model = dict(DET_RM) | ({"verifier_parm": parm} if parm is not None else {})
    chosen = reward_model_for_coordinates(reward_model, frame)
    assert chosen["verifier_parm"]["det_verifier_normalized"] is expected
    assert reward_model.get("verifier_parm") == parm  # the row is not modified


def test_other_keys_of_verifier_parm_are_kept() -> None:
    ratios = {"iou_max_label_first": 1.0, "iou_completeness": 0.3}
    chosen = reward_model_for_coordinates(DET_RM | {"verifier_parm": {"det_reward_ratio": ratios}}, "pixel")
    assert chosen["verifier_parm"] == {"det_reward_ratio": ratios, "det_verifier_normalized": True}


@pytest.mark.parametrize("frame", ["pixel", "relative1000"])
def test_a_reward_model_already_in_the_frame_and_text_verifiers_come_back_unchanged(frame) -> None:
    same = DET_RM | {"verifier_parm": {"det_verifier_normalized": frame == "pixel"}}
    assert reward_model_for_coordinates(same, frame) is same
    assert reward_model_for_coordinates(MATH_RM, frame) is MATH_RM


def test_pixel_and_relative_frames_score_the_same_box_alike() -> None:
    # Ground truth [0, 0, 500, 500] on 0-1000. On a 112 x 56 image the pixel box [0, 0, 56, 28] is
    # int(56 / 112 * 1000) = 500, int(28 / 56 * 1000) = 500: the same box as [0, 0, 500, 500] on 0-1000.
    pixel = "<answer>\n[{'bbox_2d': [0, 0, 56, 28], 'label': 'dog'}]\n</answer>"
    relative = "<answer>\n[{'bbox_2d': [0, 0, 500, 500], 'label': 'dog'}]\n</answer>"
    common = {"source": "det", "image_size": (112, 56), "step": 0, "total_steps": 10, "iou_schedule": 0.5}
    by_pixel = reward_request(pixel, DET_RM, box_coordinates="pixel", **common)
    by_relative = reward_request(relative, DET_RM, box_coordinates="relative1000", **common)
    for request in (by_pixel, by_relative):
        rewards = compute_reward(
            request.response,
            request.reward_model,
            step=request.step,
            total_steps=request.total_steps,
            image_size=request.image_size,
            iou_schedule=request.iou_schedule,
        )
        assert rewards["accuracy_reward"] == pytest.approx(1.0)


def test_reward_request_carries_the_step_and_the_source() -> None:
    request = reward_request(
        "r",
        MATH_RM,
        source="m",
        image_size=(28, 28),
        step=3,
        total_steps=9,
        box_coordinates="pixel",
        iou_schedule="dynamic",
    )
    assert (request.data_source, request.step, request.total_steps, request.image_size) == (
        "m",
        3,
        9,
        (28, 28),
    )
    assert request.reward_model is MATH_RM


def test_scorer_registry() -> None:
    assert {"local", "remote"} <= set(scorer_names())
    assert scorer_name(RewardConfig()) == "local"
    remote = RewardConfig(remote=RemoteRewardConfig(urls=["http://127.0.0.1:9"]))
    assert scorer_name(remote) == "remote"
    with pytest.raises(ValueError, match="^unknown scorer 'nope'; known: local, remote"):
        build_scorer("nope", RewardConfig())
    with pytest.raises(ValueError, match="scorer 'local' is already registered"):
        register_scorer("local")(lambda config, environ: None)


def test_remote_scorer_needs_its_token() -> None:
    remote = RewardConfig(remote=RemoteRewardConfig(urls=["http://127.0.0.1:9"], token_env="RM_TOKEN"))
    with pytest.raises(ValueError, match="environment variable RM_TOKEN is empty or not set"):
        build_scorer("remote", remote, environ={})
    client = build_scorer("remote", remote, environ={"RM_TOKEN": "t"})
    client.close()

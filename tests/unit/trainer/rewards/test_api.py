"""compute_reward, validate_reward_model and the verifier registry."""

from __future__ import annotations

import pytest

from trainer.rewards import (
    RewardModelError,
    ScoreContext,
    Verifier,
    compute_reward,
    get_verifier,
    known_verifiers,
    register_verifier,
    validate_reward_model,
)
from trainer.rewards.registry import unregister_verifier

GT_BOX = "<answer>\n[{'bbox_2d': [10, 10, 100, 100], 'label': 'dog'}]\n</answer>"
MATH = {"verifier": "mathverify", "ground_truth": "\\boxed{4}"}
DET = {
    "verifier": "detection",
    "ground_truth": GT_BOX,
    "answer": "a dog",
    "accuracy_ratio": 1.0,
    "format_ratio": 0.1,
    "verifier_parm": {
        "det_verifier_normalized": False,
        "det_reward_ratio": {"iou_max_label_first": 1.0, "iou_completeness": 0.3},
    },
}


def test_known_verifiers():
    assert known_verifiers() == ["choice", "detection", "exact", "mathverify", "number"]


@pytest.mark.parametrize(
    "model",
    [
        MATH,
        DET,
        dict(MATH, accuracy_ratio=0, format_ratio=1),
        dict(MATH, accuracy_ratio=None, format_ratio=None),  # null means the default
        dict(
            MATH, verifier_parm={"det_verifier_normalized": None, "verifier_style": "rule"}
        ),  # V-Triune rows
        dict(DET, verifier_parm=None),  # detection without ratios: V-Triune's defaults
        {"verifier": "choice", "ground_truth": "\\boxed{C}"},
        {"verifier": "exact", "ground_truth": "STOP"},
        {"verifier": "number", "ground_truth": "\\boxed{12}", "verifier_parm": {"abs_tol": 0.5}},
    ],
)
def test_valid(model):
    validate_reward_model(model)


@pytest.mark.parametrize(
    ("model", "field", "message"),
    [
        ([1, 2], "reward_model", "reward_model must be an object (dict), got list"),
        (
            {"ground_truth": "\\boxed{4}"},
            "reward_model.verifier",
            "verifier is missing: name the verifier, e.g. 'mathverify'",
        ),
        (dict(MATH, verifier=3), "reward_model.verifier", "verifier must be a string, got int"),
        (
            dict(MATH, verifier="llm_judge"),
            "reward_model.verifier",
            "unknown verifier 'llm_judge'; known verifiers: choice, detection, exact, mathverify, number",
        ),
        (
            dict(MATH, format_ratio=1.5),
            "reward_model.format_ratio",
            "format_ratio must be a number in [0, 1], got 1.5",
        ),
        (
            dict(MATH, format_ratio=-0.1),
            "reward_model.format_ratio",
            "format_ratio must be a number in [0, 1], got -0.1",
        ),
        (
            dict(MATH, accuracy_ratio="1"),
            "reward_model.accuracy_ratio",
            "accuracy_ratio must be a number in [0, 1], got '1'",
        ),
        (
            dict(MATH, accuracy_ratio=True),
            "reward_model.accuracy_ratio",
            "accuracy_ratio must be a number in [0, 1], got True",
        ),
        (
            dict(MATH, accuracy_ratio=float("nan")),
            "reward_model.accuracy_ratio",
            "accuracy_ratio must be a number in [0, 1], got nan",
        ),
        (
            dict(MATH, accuracy_ratio=0, format_ratio=0.0),
            "reward_model.accuracy_ratio",
            "accuracy_ratio and format_ratio must not both be 0: nothing would be scored",
        ),
        (dict(MATH, answer=4), "reward_model.answer", "answer must be a string, got int"),
        ({"verifier": "mathverify"}, "reward_model.ground_truth", "ground_truth is missing"),
        (dict(MATH, ground_truth=4), "reward_model.ground_truth", "ground_truth must be a string, got int"),
        (dict(MATH, ground_truth="  "), "reward_model.ground_truth", "ground_truth is empty"),
        (
            dict(MATH, ground_truth="4"),
            "reward_model.ground_truth",
            "ground_truth must put the answer in \\boxed{}, got '4'",
        ),
        (
            dict(MATH, ground_truth="\\boxed{}"),
            "reward_model.ground_truth",
            "math-verify cannot parse the ground truth '\\\\boxed{}'",
        ),
        (
            dict(MATH, ground_truth="\\boxed{" + "\\frac{1}{" * 40 + "2" + "}" * 41),
            "reward_model.ground_truth",
            "ground_truth nests braces deeper than 32 levels",
        ),
        (
            dict(MATH, ground_truth="\\boxed{1}" + " " * 3000),
            "reward_model.ground_truth",
            "ground_truth is 3009 characters long; at most 2000 are allowed",
        ),
        (
            dict(MATH, verifier_parm=[1]),
            "reward_model.verifier_parm",
            "verifier_parm must be an object (dict), got list",
        ),
        (
            dict(MATH, verifier_parm={"abs_tol": 1}),
            "reward_model.verifier_parm.abs_tol",
            "unknown key 'abs_tol' in verifier_parm of verifier 'mathverify'; known keys: det_reward_ratio, "
            "det_verifier_normalized, verifier_style",
        ),
        (
            dict(DET, verifier_parm={"det_verifier_normalized": "yes"}),
            "reward_model.verifier_parm.det_verifier_normalized",
            "det_verifier_normalized must be true or false, got 'yes'",
        ),
        (
            dict(DET, verifier_parm={"det_reward_ratio": {"map": 2}}),
            "reward_model.verifier_parm.det_reward_ratio.map",
            "map must be a number in [0, 1], got 2",
        ),
        (
            dict(DET, verifier_parm={"det_reward_ratio": {"mAP": 1}}),
            "reward_model.verifier_parm.det_reward_ratio.mAP",
            "unknown key 'mAP' in det_reward_ratio; known keys: iou_max_iou_first, iou_max_label_first, "
            "map, map50, map75, iou_completeness",
        ),
        (
            dict(DET, verifier_parm={"det_reward_ratio": {"iou_completeness": 0.3}}),
            "reward_model.verifier_parm.det_reward_ratio",
            "det_reward_ratio must give a positive weight to at least one of iou_max_iou_first, "
            "iou_max_label_first, map, map50, map75",
        ),
        (
            dict(DET, verifier_parm={"det_reward_ratio": [1.0]}),
            "reward_model.verifier_parm.det_reward_ratio",
            "det_reward_ratio must be an object (dict), got list",
        ),
        (
            dict(DET, ground_truth="[{'bbox_2d': [1, 2, 3, 4], 'label': 'dog'}]"),
            "reward_model.ground_truth",
            "ground_truth must hold <answer>[{'bbox_2d': [x1, y1, x2, y2], 'label': '...'}, ...]</answer> "
            "with at least one valid box",
        ),
        (
            dict(DET, ground_truth="<answer>[{'bbox_2d': [10, 10, 1200, 100], 'label': 'dog'}]</answer>"),
            "reward_model.ground_truth",
            "ground-truth box 0 [10, 10, 1200, 100] is off the 0–1000 scale: "
            "coordinates must be in [0, 1000]",
        ),
    ],
)
def test_invalid(model, field, message):
    with pytest.raises(RewardModelError) as info:
        validate_reward_model(model)
    assert info.value.field == field
    assert str(info.value) == message


def test_compute_reward_checks_its_arguments():
    with pytest.raises(TypeError, match="response must be a str, got bytes"):
        compute_reward(b"\\boxed{4}", MATH)
    with pytest.raises(
        ValueError, match=r"image_size must be \(width, height\), two positive ints, got \(0, 5\)"
    ):
        compute_reward("x", DET, image_size=(0, 5))
    with pytest.raises(ValueError, match="total_steps must be an int >= 1, got 0"):
        compute_reward("x", MATH, total_steps=0)
    with pytest.raises(RewardModelError, match="format_ratio must be a number in"):
        compute_reward("x", dict(MATH, format_ratio=7))


def test_every_reward_is_a_float():
    for model in (MATH, DET, {"verifier": "choice", "ground_truth": "A"}):
        rewards = compute_reward("<answer>\nA\n</answer>", model)
        assert all(type(value) is float and key.endswith("_reward") for key, value in rewards.items())


def test_registering_twice_raises():
    with pytest.raises(
        ValueError, match=r"verifier 'mathverify' is already registered \(by MathVerifyVerifier\)"
    ):

        @register_verifier("mathverify")
        class Again(Verifier):
            def score(self, response, reward_model, context):
                return {}

            def validate(self, reward_model):
                pass


def test_register_rejects_non_verifiers_and_bad_keys():
    with pytest.raises(TypeError):
        register_verifier("thing")(object)
    with pytest.raises(ValueError, match="extra_keys must end in '_reward'"):

        @register_verifier("badkeys")
        class BadKeys(Verifier):
            extra_keys = ("length",)

            def score(self, response, reward_model, context):
                return {}

            def validate(self, reward_model):
                pass


def test_a_new_verifier_is_one_class_and_one_registration():
    @register_verifier("length")
    class LengthVerifier(Verifier):
        extra_keys = ("chars_reward",)

        def score(self, response, reward_model, context: ScoreContext):
            short = len(response) <= int(reward_model["ground_truth"])
            return {
                "accuracy_reward": float(short),
                "format_reward": 1.0,
                "chars_reward": float(len(response)),
            }

        def validate(self, reward_model):
            if not reward_model["ground_truth"].isdigit():
                raise RewardModelError("reward_model.ground_truth", "ground_truth must be a length")

    try:
        assert "length" in known_verifiers()
        assert isinstance(get_verifier("length"), LengthVerifier)
        rewards = compute_reward("abc", {"verifier": "length", "ground_truth": "5"})
        # (1·1 + 0.1·1) / 1.1 = 1
        assert rewards == {"accuracy_reward": 1.0, "format_reward": 1.0, "final_reward": pytest.approx(1.0),
                           "chars_reward": 3.0}  # fmt: skip
        with pytest.raises(RewardModelError, match="must be a length"):
            validate_reward_model({"verifier": "length", "ground_truth": "x"})
    finally:
        unregister_verifier("length")
    assert "length" not in known_verifiers()


def test_a_non_finite_reward_is_an_error():
    @register_verifier("nan_scorer")
    class NanScorer(Verifier):
        def score(self, response, reward_model, context):
            return {"accuracy_reward": float("nan"), "format_reward": 0.0}

        def validate(self, reward_model):
            pass

    try:
        with pytest.raises(
            ValueError, match="verifier 'nan_scorer' returned non-finite rewards: accuracy_reward"
        ):
            compute_reward("x", {"verifier": "nan_scorer", "ground_truth": "1"})
    finally:
        unregister_verifier("nan_scorer")


def test_a_ground_truth_math_verify_cannot_parse_scores_accuracy_0_and_the_format() -> None:
    """As V-Triune's reward server: the defined reward, the reason reported (uploads refuse such rows)."""
    from trainer.rewards import RewardRequest, count_errors, score_request

    response = "<think>\nok\n</think>\n<answer>\n\\boxed{2}\n</answer>"
    broken = {"verifier": "mathverify", "ground_truth": "\\boxed{\\frac{", "format_ratio": 0.5}
    problems: list[str] = []
    rewards = compute_reward(response, broken, problems=problems)
    assert rewards["accuracy_reward"] == 0.0 and rewards["format_reward"] == 1.0
    assert rewards["final_reward"] == pytest.approx(0.5 / 1.5)  # (0 · 1 + 1 · 0.5) / (1 + 0.5)
    assert problems and problems[0].startswith("reward_model.ground_truth: ground truth does not parse")
    with pytest.raises(RewardModelError, match="cannot parse the ground truth"):
        validate_reward_model(broken)  # an upload still refuses the row
    request = RewardRequest(response, broken, data_source="s")
    result = score_request(request)
    assert result.rewards["format_reward"] == 1.0 and result.error.startswith(
        "error: reward_model.ground_truth"
    )
    assert count_errors([request], [result])["s"].reward_errors == 1
    # a ground truth of the wrong type is still an error of the whole request
    with pytest.raises(RewardModelError, match="ground_truth must be a string"):
        compute_reward(response, {"verifier": "mathverify", "ground_truth": 4})


def test_detection_weights_all_0_score_accuracy_0_and_the_format() -> None:
    zero = {k: 0.0 for k in ("iou_max_iou_first", "iou_max_label_first", "map", "map50", "map75")}
    model = dict(DET, verifier_parm={"det_reward_ratio": zero})
    problems: list[str] = []
    rewards = compute_reward("<answer>\n[]\n</answer>", model, problems=problems)
    assert rewards["accuracy_reward"] == 0.0 and problems == []
    assert set(rewards) >= {"format_reward", "final_reward"}

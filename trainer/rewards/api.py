"""The public entry points: :func:`compute_reward` and :func:`validate_reward_model`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainer.rewards.errors import RewardModelError
from trainer.rewards.registry import ScoreContext, Verifier, get_verifier, ratio, verifier_parm
from trainer.rewards.schedule import IoUSchedule, Schedule, parse_schedule

DEFAULT_ACCURACY_RATIO = 1.0
DEFAULT_FORMAT_RATIO = 0.1
# Ground truths and answers longer than this are refused at upload.
MAX_GROUND_TRUTH_CHARS = 1_000_000


def _verifier(reward_model: Any) -> Verifier:
    if not isinstance(reward_model, Mapping):
        raise RewardModelError(
            "reward_model", f"reward_model must be an object (dict), got {type(reward_model).__name__}"
        )
    name = reward_model.get("verifier")
    if name is None:
        raise RewardModelError(
            "reward_model.verifier", "verifier is missing: name the verifier, e.g. 'mathverify'"
        )
    if not isinstance(name, str):
        raise RewardModelError(
            "reward_model.verifier", f"verifier must be a string, got {type(name).__name__}"
        )
    return get_verifier(name)


def reward_ratios(reward_model: Mapping[str, Any]) -> tuple[float, float]:
    """(α_acc, α_fmt): ``accuracy_ratio`` (default 1.0) and ``format_ratio`` (default 0.1), checked."""
    accuracy = ratio(reward_model, "accuracy_ratio", DEFAULT_ACCURACY_RATIO, "reward_model.accuracy_ratio")
    fmt = ratio(reward_model, "format_ratio", DEFAULT_FORMAT_RATIO, "reward_model.format_ratio")
    if accuracy + fmt <= 0.0:
        raise RewardModelError(
            "reward_model.accuracy_ratio",
            "accuracy_ratio and format_ratio must not both be 0: nothing would be scored",
        )
    return accuracy, fmt


def combine(accuracy: float, fmt: float, accuracy_ratio: float, format_ratio: float) -> float:
    """final = (a · accuracy + f · format) / (a + f), in V-Triune's reward server's arithmetic.

    >>> round(combine(1.0, 0.5, 1.0, 0.1), 6)  # (1·1 + 0.1·0.5) / 1.1
    0.954545
    """
    total = accuracy_ratio + format_ratio
    return accuracy * (accuracy_ratio / total) + fmt * (format_ratio / total)


def _image_size(image_size: Any) -> tuple[int, int] | None:
    if image_size is None:
        return None
    if image_size.__class__ is tuple and len(image_size) == 2:  # the usual (width, height)
        width, height = image_size
        if width.__class__ is int and height.__class__ is int and width > 0 and height > 0:
            return image_size
    if (
        isinstance(image_size, str | bytes)
        or not hasattr(image_size, "__len__")
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise ValueError(f"image_size must be (width, height), two positive ints, got {image_size!r}")
    return int(image_size[0]), int(image_size[1])


def compute_reward(
    response: str,
    reward_model: Mapping[str, Any],
    *,
    step: int = 0,
    total_steps: int = 1,
    image_size: tuple[int, int] | None = None,
    iou_schedule: Schedule | IoUSchedule = "dynamic",
    problems: list[str] | None = None,
) -> dict[str, float]:
    """Score one response: ``accuracy_reward``, ``format_reward``, ``final_reward`` and the
    verifier's breakdown (every key ends in ``_reward``; every value is a finite float).

    A ground truth math-verify cannot parse, or detection weights that are all 0, score
    accuracy 0 with the format still scored (as V-Triune's reward server does); the reason is
    appended to ``problems`` when given (the reward pool counts it in ``reward_errors``).

    ``image_size`` is the (width, height) of the image the model saw, needed only by detection
    samples with ``det_verifier_normalized``. ``step``/``total_steps`` drive the IoU schedule.
    Raises :class:`RewardModelError` for a reward_model that cannot be scored (unknown verifier,
    ratio out of range, a malformed detection ground truth) and ``ValueError``/``TypeError``
    for bad arguments. Hostile input can make math-verify run for minutes: score untrusted
    responses through :class:`trainer.rewards.RewardPool`, which has a time limit.

    >>> compute_reward("<think>\\nok\\n</think>\\n<answer>\\n\\\\boxed{2}\\n</answer>",
    ...                {"verifier": "mathverify", "ground_truth": "\\\\boxed{2}"})
    {'accuracy_reward': 1.0, 'format_reward': 1.0, 'final_reward': 1.0}
    """
    verifier = _verifier(reward_model)
    if not isinstance(response, str):
        raise TypeError(f"response must be a str, got {type(response).__name__}")
    context = ScoreContext(
        step=step,
        total_steps=total_steps,
        image_size=_image_size(image_size),
        schedule=parse_schedule(iou_schedule),
    )
    context.schedule.threshold(step, total_steps)  # checks step and total_steps
    accuracy_ratio, format_ratio = reward_ratios(reward_model)
    scores = verifier.score(response, reward_model, context)
    if problems is not None:
        problems += context.problems
    # In reward_keys() order; final_reward (not the verifier's) is filled in place below.
    rewards = {key: 0.0 if key == "final_reward" else float(scores[key]) for key in verifier.reward_keys()}
    rewards["final_reward"] = combine(
        rewards["accuracy_reward"], rewards["format_reward"], accuracy_ratio, format_ratio
    )
    if not math.isfinite(sum(rewards.values())):  # a NaN or an infinity somewhere (or a huge value)
        bad = [key for key, value in rewards.items() if not math.isfinite(value)]
        if bad:
            raise ValueError(f"verifier {verifier.name!r} returned non-finite rewards: {', '.join(bad)}")
    return rewards


def validate_reward_model(reward_model: Mapping[str, Any]) -> None:
    """Raise :class:`RewardModelError` unless ``reward_model`` can be scored.

    Checks: the verifier is known; ``accuracy_ratio``/``format_ratio`` are numbers in [0, 1]
    (not both 0); ``answer`` is a string; ``verifier_parm`` is an object with the keys its
    verifier reads; and the ground truth parses with its verifier (a ``\\boxed{}`` that
    math-verify parses; for detection, at least one valid box on the 0–1000 scale). The
    error's ``field`` is the dotted path of the culprit.

    >>> validate_reward_model({"verifier": "mathverify", "ground_truth": "\\\\boxed{1}", "format_ratio": 1.5})
    Traceback (most recent call last):
    ...
    trainer.rewards.errors.RewardModelError: format_ratio must be a number in [0, 1], got 1.5
    """
    verifier = _verifier(reward_model)
    reward_ratios(reward_model)
    answer = reward_model.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise RewardModelError("reward_model.answer", f"answer must be a string, got {type(answer).__name__}")
    text = reward_model.get("ground_truth")
    if text is None:
        raise RewardModelError("reward_model.ground_truth", "ground_truth is missing")
    if not isinstance(text, str):
        raise RewardModelError(
            "reward_model.ground_truth", f"ground_truth must be a string, got {type(text).__name__}"
        )
    if not text.strip():
        raise RewardModelError("reward_model.ground_truth", "ground_truth is empty")
    if len(text) > MAX_GROUND_TRUTH_CHARS:
        raise RewardModelError(
            "reward_model.ground_truth",
            f"ground_truth is {len(text)} characters long; at most {MAX_GROUND_TRUTH_CHARS} are allowed",
        )
    verifier_parm(reward_model)
    verifier.validate(reward_model)


def reward_keys(reward_model: Mapping[str, Any]) -> tuple[str, ...]:
    """The keys :func:`compute_reward` returns for ``reward_model`` (base three if unknown)."""
    try:
        return _verifier(reward_model).reward_keys()
    except RewardModelError:
        return ("accuracy_reward", "format_reward", "final_reward")

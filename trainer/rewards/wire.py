"""JSON form of reward requests and results for the reward service, checked both ways.

Request body: ``{"items": [{"response", "reward_model", "step", "total_steps", "image_size",
"data_source", "iou_schedule"}, ...]}`` (only ``response`` and ``reward_model`` required).
Response body: ``{"results": [{"rewards": {key: number}, "error": null | str}, ...]}``.
Floats survive the JSON round trip exactly, so remote scores equal in-process ones.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from trainer.rewards.requests import RewardRequest, RewardResult

MAX_ITEMS = 16384
MAX_RESPONSE_CHARS = 4_000_000
MAX_SOURCE_CHARS = 256
MAX_SCHEDULE_STEPS = 100
MAX_REWARD_KEYS = 256
_FIELDS = ("response", "reward_model", "step", "total_steps", "image_size", "data_source", "iou_schedule")


class WireError(ValueError):
    """A request or response body that does not have the expected shape; the message names the spot."""


def _int(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise WireError(f"{where} must be an int >= {minimum}, got {value!r}"[:300])
    return value


def request_to_json(request: RewardRequest) -> dict[str, Any]:
    """The JSON object of ``request``."""
    return {
        "response": request.response,
        "reward_model": dict(request.reward_model),
        "step": request.step,
        "total_steps": request.total_steps,
        "image_size": None if request.image_size is None else list(request.image_size),
        "data_source": request.data_source,
        "iou_schedule": request.iou_schedule
        if isinstance(request.iou_schedule, str | int | float)
        else [list(pair) for pair in request.iou_schedule],
    }


def request_from_json(obj: Any, where: str = "item") -> RewardRequest:
    """A :class:`RewardRequest` from its JSON object; :class:`WireError` names the bad field.

    Only the shape is checked here; the content of ``reward_model`` is the verifier's to judge
    (a bad one scores 0 with an error, as in-process).
    """
    if not isinstance(obj, dict):
        raise WireError(f"{where} must be an object, got {type(obj).__name__}")
    unknown = sorted(set(obj) - set(_FIELDS))
    if unknown:
        raise WireError(f"{where} has unknown fields {unknown[:5]}; known: {', '.join(_FIELDS)}")
    response = obj.get("response")
    if not isinstance(response, str):
        raise WireError(f"{where}.response must be a string, got {type(response).__name__}")
    if len(response) > MAX_RESPONSE_CHARS:
        raise WireError(f"{where}.response is longer than {MAX_RESPONSE_CHARS} characters")
    reward_model = obj.get("reward_model")
    if not isinstance(reward_model, dict):
        raise WireError(f"{where}.reward_model must be an object, got {type(reward_model).__name__}")
    step = _int(obj.get("step", 0), f"{where}.step", 0)
    total_steps = _int(obj.get("total_steps", 1), f"{where}.total_steps", 1)
    image_size = obj.get("image_size")
    if image_size is not None:
        if not isinstance(image_size, list) or len(image_size) != 2:
            raise WireError(f"{where}.image_size must be [width, height] or null, got {image_size!r}"[:300])
        image_size = (
            _int(image_size[0], f"{where}.image_size[0]", 1),
            _int(image_size[1], f"{where}.image_size[1]", 1),
        )
    data_source = obj.get("data_source", "")
    if not isinstance(data_source, str) or len(data_source) > MAX_SOURCE_CHARS:
        raise WireError(f"{where}.data_source must be a string of at most {MAX_SOURCE_CHARS} characters")
    schedule = obj.get("iou_schedule", "dynamic")
    if isinstance(schedule, bool) or not isinstance(schedule, str | int | float | list):
        raise WireError(f"{where}.iou_schedule must be a string, a number or a list of [fraction, threshold]")
    if isinstance(schedule, str) and len(schedule) > 32:
        raise WireError(f"{where}.iou_schedule is too long")
    if isinstance(schedule, list):
        if len(schedule) > MAX_SCHEDULE_STEPS:
            raise WireError(f"{where}.iou_schedule has more than {MAX_SCHEDULE_STEPS} steps")
        for pair in schedule:
            if not isinstance(pair, list) or len(pair) != 2:
                raise WireError(f"{where}.iou_schedule steps must be [fraction, threshold] pairs")
        schedule = [tuple(pair) for pair in schedule]
    return RewardRequest(
        response=response,
        reward_model=reward_model,
        step=step,
        total_steps=total_steps,
        image_size=image_size,
        data_source=data_source,
        iou_schedule=schedule,
    )


def requests_from_body(body: Any, max_items: int = MAX_ITEMS) -> list[RewardRequest]:
    """The requests of a ``{"items": [...]}`` body."""
    if not isinstance(body, dict) or set(body) != {"items"}:
        raise WireError('the body must be an object {"items": [...]}')
    items = body["items"]
    if not isinstance(items, list) or not items:
        raise WireError("items must be a non-empty list")
    if len(items) > max_items:
        raise WireError(f"items holds {len(items)} entries; at most {max_items} per request")
    return [request_from_json(item, f"items[{i}]") for i, item in enumerate(items)]


def result_to_json(result: RewardResult) -> dict[str, Any]:
    """The JSON object of ``result``; a non-finite reward is refused (it cannot be JSON)."""
    check_result(result)
    return {"rewards": dict(result.rewards), "error": result.error}


def check_result(result: RewardResult, where: str = "result") -> None:
    """Raise :class:`WireError` unless ``result`` holds finite float rewards and a str/None error."""
    if not isinstance(result.rewards, Mapping) or len(result.rewards) > MAX_REWARD_KEYS:
        raise WireError(f"{where}.rewards must be an object of at most {MAX_REWARD_KEYS} entries")
    for key, value in result.rewards.items():
        if not isinstance(key, str) or not key.endswith("_reward"):
            raise WireError(f"{where}.rewards has a key that is not a reward name: {key!r}"[:300])
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise WireError(f"{where}.rewards.{key} must be a finite number, got {value!r}"[:300])
    if result.error is not None and not isinstance(result.error, str):
        raise WireError(f"{where}.error must be a string or null")


def results_from_body(body: Any, expected: int) -> list[RewardResult]:
    """The results of a ``{"results": [...]}`` body holding ``expected`` entries."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise WireError('the reply must be an object {"results": [...]}')
    entries = body["results"]
    if len(entries) != expected:
        raise WireError(f"the reply holds {len(entries)} results for {expected} items")
    results = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) != {"rewards", "error"}:
            raise WireError(f"results[{i}] must be an object with rewards and error")
        rewards = entry["rewards"]
        if not isinstance(rewards, dict):
            raise WireError(f"results[{i}].rewards must be an object")
        check_result(RewardResult(rewards, entry["error"]), f"results[{i}]")
        results.append(RewardResult({key: float(value) for key, value in rewards.items()}, entry["error"]))
    return results

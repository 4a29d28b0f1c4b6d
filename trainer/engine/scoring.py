"""Scoring a step's responses: reward requests, the coordinate frame, and the scorer registry.

A scorer is anything with ``score(requests) -> results`` and ``close()``: the local
:class:`trainer.rewards.RewardPool` (process pool with a per-sample time limit) or the remote
reward service (:class:`trainer.rewards.RewardClient`), chosen by name through
:func:`build_scorer`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, Protocol, TypeVar

from trainer.config import RewardConfig
from trainer.registry import lookup, register_into
from trainer.rewards import RewardClient, RewardPool, RewardRequest, RewardResult
from trainer.rewards.schedule import Schedule

BoxCoordinates = Literal["pixel", "relative1000"]
DETECTION_VERIFIERS = ("detection",)


class Scorer(Protocol):
    """Scores reward requests; never raises for one bad sample (it scores 0 with an error)."""

    def score(self, items: Sequence[RewardRequest]) -> list[RewardResult]: ...

    def close(self) -> None: ...


S = TypeVar("S", bound=Callable[..., Scorer])
_SCORERS: dict[str, Callable[..., Scorer]] = {}


def register_scorer(name: str) -> Callable[[S], S]:
    """Register a scorer factory ``factory(config: RewardConfig, environ) -> Scorer`` under ``name``."""

    return register_into(_SCORERS, "scorer", name)


def scorer_names() -> list[str]:
    """Registered scorer names, sorted."""
    return sorted(_SCORERS)


def build_scorer(name: str, config: RewardConfig, environ: Mapping[str, str] | None = None) -> Scorer:
    """The scorer registered as ``name``, built from the reward config."""
    return lookup(_SCORERS, "scorer", name)(config, os.environ if environ is None else environ)


def scorer_name(config: RewardConfig) -> str:
    """``remote`` when the config names a reward service, else ``local``."""
    return "remote" if config.remote is not None else "local"


@register_scorer("local")
def _local(config: RewardConfig, environ: Mapping[str, str]) -> Scorer:
    return RewardPool(workers=config.workers, timeout_s=config.timeout_s)


@register_scorer("remote")
def _remote(config: RewardConfig, environ: Mapping[str, str]) -> Scorer:
    remote = config.remote
    if remote is None:
        raise ValueError("the remote scorer needs reward.remote (urls, token_env)")
    token = environ.get(remote.token_env, "")
    if not token:
        raise ValueError(
            f"reward.remote: environment variable {remote.token_env} is empty or not set; "
            "it must hold the reward service's token"
        )
    return RewardClient(remote.urls, token, timeout_s=remote.timeout_s, retries=remote.retries)


def reward_model_for_coordinates(
    reward_model: Mapping[str, Any], box_coordinates: BoxCoordinates
) -> Mapping[str, Any]:
    """The reward model to score with, given how the model writes boxes (``data.box_coordinates``).

    ``pixel`` (Qwen2.5-VL writes absolute pixels of the image it saw) turns
    ``det_verifier_normalized`` on, so the verifier maps predictions to the 0–1000 frame of the
    ground truth with the processed image size; ``relative1000`` (Qwen2-VL writes 0–1000
    already) turns it off. Other verifiers, and detection rows that already say the same,
    come back unchanged (the same object).

    >>> reward_model_for_coordinates({"verifier": "detection"}, "pixel")["verifier_parm"]
    {'det_verifier_normalized': True}
    """
    if reward_model.get("verifier") not in DETECTION_VERIFIERS:
        return reward_model
    wanted = box_coordinates == "pixel"
    parm = reward_model.get("verifier_parm")
    parm = dict(parm) if isinstance(parm, Mapping) else {}
    if parm.get("det_verifier_normalized") is wanted:
        return reward_model
    parm["det_verifier_normalized"] = wanted
    return {**reward_model, "verifier_parm": parm}


def reward_request(
    response: str,
    reward_model: Mapping[str, Any],
    *,
    source: str,
    image_size: tuple[int, int] | None,
    step: int,
    total_steps: int,
    box_coordinates: BoxCoordinates,
    iou_schedule: Schedule,
) -> RewardRequest:
    """The request scoring one response (``image_size``: (width, height) the processor produced)."""
    return RewardRequest(
        response=response,
        reward_model=reward_model_for_coordinates(reward_model, box_coordinates),
        step=step,
        total_steps=total_steps,
        image_size=image_size,
        data_source=source,
        iou_schedule=iou_schedule,
    )

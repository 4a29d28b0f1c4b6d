"""Verifiable rewards of the RL loop (DESIGN.md §4), in the style of V-Triune's reward server.

``compute_reward(response, reward_model, ...)`` scores one response with the verifier named by
``reward_model["verifier"]`` (``mathverify``, ``detection``, ``choice``, ``exact``, ``number``);
``RewardPool`` scores batches across processes with a per-sample time limit;
``trainer.rewards.service`` serves the pool over HTTP and ``RewardClient`` calls it.
"""

from __future__ import annotations

# Importing the verifier modules registers them.
from trainer.rewards import choice, detection, exact, mathverify, number  # noqa: F401
from trainer.rewards.api import compute_reward, reward_keys, validate_reward_model
from trainer.rewards.client import RewardClient, RewardServiceError
from trainer.rewards.detection import DETECTION_KEYS, DETECTION_METRIC_KEYS
from trainer.rewards.errors import IoUScheduleError, RewardModelError
from trainer.rewards.pool import RewardPool
from trainer.rewards.registry import ScoreContext, Verifier, get_verifier, known_verifiers, register_verifier
from trainer.rewards.requests import ErrorCounts, RewardRequest, RewardResult, count_errors, score_request
from trainer.rewards.schedule import iou_threshold, parse_schedule

__all__ = [
    "DETECTION_KEYS",
    "DETECTION_METRIC_KEYS",
    "ErrorCounts",
    "IoUScheduleError",
    "RewardClient",
    "RewardModelError",
    "RewardPool",
    "RewardRequest",
    "RewardResult",
    "RewardServiceError",
    "ScoreContext",
    "Verifier",
    "compute_reward",
    "count_errors",
    "get_verifier",
    "iou_threshold",
    "known_verifiers",
    "parse_schedule",
    "register_verifier",
    "reward_keys",
    "score_request",
    "validate_reward_model",
]

"""What is scored and what comes back: :class:`RewardRequest`, :class:`RewardResult`.

Scoring one request never raises: a failure gives every reward key of its verifier at 0.0
and an ``error`` ("timeout" or "error: ..."), counted per data source by :func:`count_errors`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trainer.rewards.api import compute_reward, reward_keys
from trainer.rewards.errors import RewardModelError
from trainer.rewards.schedule import Schedule

TIMEOUT = "timeout"
MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class RewardRequest:
    """One response to score, with what :func:`compute_reward` needs."""

    response: str
    reward_model: Mapping[str, Any]
    step: int = 0
    total_steps: int = 1
    image_size: tuple[int, int] | None = None  # (width, height) the model saw
    data_source: str = ""  # for per-source error counts
    iou_schedule: Schedule = "dynamic"


@dataclass(frozen=True)
class RewardResult:
    """Rewards of one request; ``error`` is None, ``"timeout"`` or ``"error: <what>"``."""

    rewards: dict[str, float]
    error: str | None = None


@dataclass
class ErrorCounts:
    """Failures of one data source in one batch."""

    count: int = 0  # requests of the source
    timeouts: int = 0
    errors: int = 0  # failures other than timeouts
    messages: dict[str, int] = field(default_factory=dict)  # error text -> occurrences

    @property
    def reward_errors(self) -> int:
        """Timeouts and failures together (the ``reward_errors`` metric)."""
        return self.timeouts + self.errors


def zero_result(request: RewardRequest, error: str) -> RewardResult:
    """The result of a failed request: every reward key of its verifier at 0.0."""
    return RewardResult(dict.fromkeys(reward_keys(request.reward_model), 0.0), error)


def error_text(exc: BaseException) -> str:
    """``"error: <field>: <message>"`` for a reward_model problem, ``"error: <Type>: <message>"`` else."""
    if isinstance(exc, RewardModelError):
        text = f"error: {exc.field}: {exc.message}"
    elif isinstance(exc, MemoryError):
        text = "error: out of memory"
    else:
        text = f"error: {type(exc).__name__}: {exc}"
    return text[:MAX_ERROR_CHARS]


def score_request(request: RewardRequest) -> RewardResult:
    """Score ``request`` in this process; any exception becomes a zero result with its error.

    No time limit here: use :class:`trainer.rewards.RewardPool` for untrusted responses.
    """
    problems: list[str] = []
    try:
        rewards = compute_reward(
            request.response,
            request.reward_model,
            step=request.step,
            total_steps=request.total_steps,
            image_size=request.image_size,
            iou_schedule=request.iou_schedule,
            problems=problems,
        )
    except Exception as exc:  # every failure is a scored 0, never a crash of the batch
        return zero_result(request, error_text(exc))
    # a ground truth the verifier scored around: the defined reward, counted as an error
    return RewardResult(rewards, f"error: {problems[0]}"[:MAX_ERROR_CHARS] if problems else None)


def count_errors(
    requests: Sequence[RewardRequest], results: Sequence[RewardResult]
) -> dict[str, ErrorCounts]:
    """Per data source: requests, timeouts and other failures of a scored batch.

    >>> r = [RewardRequest("x", {}, data_source="a"), RewardRequest("y", {}, data_source="a")]
    >>> counts = count_errors(r, [RewardResult({}, "timeout"), RewardResult({})])
    >>> counts["a"].count, counts["a"].timeouts, counts["a"].reward_errors
    (2, 1, 1)
    """
    if len(requests) != len(results):
        raise ValueError(f"{len(requests)} requests but {len(results)} results")
    counts: dict[str, ErrorCounts] = {}
    for request, result in zip(requests, results, strict=True):
        entry = counts.setdefault(request.data_source, ErrorCounts())
        entry.count += 1
        if result.error is None:
            continue
        if result.error == TIMEOUT:
            entry.timeouts += 1
        else:
            entry.errors += 1
        entry.messages[result.error] = entry.messages.get(result.error, 0) + 1
    return counts

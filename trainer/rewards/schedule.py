"""The IoU threshold ε of the detection reward over training (V-Triune §3.3, "dynamic IoU reward").

A schedule is one of:

- ``"dynamic"``: V-Triune's, 0.85 while step/total_steps ≤ 0.10, 0.95 while ≤ 0.25, then 0.99;
- a fixed threshold in (0, 1], as a number or a numeric string (``0.75``, ``"0.75"``);
- ``"average"``: the weighted score is averaged over :data:`AVERAGE_THRESHOLDS` instead of read at
  one ε (:func:`iou_threshold` then reports their mean);
- a list of ``(fraction, threshold)`` steps with strictly increasing fractions in [0, 1]: the
  threshold of the first step whose fraction is ≥ step/total_steps applies, the last one after that.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from numbers import Real

from trainer.rewards.errors import IoUScheduleError

# Thresholds of the "average" schedule and of the logged breakdown; the same literals as
# V-Triune's reward server, so that an equality test on a threshold finds them.
AVERAGE_THRESHOLDS: tuple[float, ...] = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99)
DYNAMIC_STEPS: tuple[tuple[float, float], ...] = ((0.10, 0.85), (0.25, 0.95), (1.0, 0.99))

Schedule = str | float | Sequence[Sequence[float]]


@dataclass(frozen=True)
class IoUSchedule:
    """A validated schedule: ``steps`` for a stepwise one, or ``average`` set."""

    steps: tuple[tuple[float, float], ...] = DYNAMIC_STEPS
    average: bool = False

    def threshold(self, step: int, total_steps: int) -> float:
        """ε at ``step`` of ``total_steps``; for ``average``, the mean of :data:`AVERAGE_THRESHOLDS`."""
        if self.average:
            return sum(AVERAGE_THRESHOLDS) / len(AVERAGE_THRESHOLDS)
        ratio = _progress(step, total_steps)
        for fraction, value in self.steps:
            if ratio <= fraction:
                return value
        return self.steps[-1][1]


def _progress(step: int, total_steps: int) -> float:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be an int >= 1, got {total_steps!r}")
    return float(step) / float(total_steps)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(float(value))


def _check_threshold(value: float, where: str) -> float:
    if not _is_number(value) or not 0.0 < float(value) <= 1.0:
        raise IoUScheduleError(f"{where} must be a number in (0, 1], got {value!r}")
    return float(value)


def parse_schedule(schedule: Schedule | IoUSchedule) -> IoUSchedule:
    """Validate ``schedule`` (see the module docstring) and return it as an :class:`IoUSchedule`.

    >>> parse_schedule("dynamic").threshold(10, 100)
    0.85
    >>> parse_schedule([[0.5, 0.7], [1.0, 0.9]]).threshold(60, 100)
    0.9
    """
    if isinstance(schedule, IoUSchedule):
        return schedule
    if isinstance(schedule, bool):
        raise IoUScheduleError(f"the IoU threshold must be a number in (0, 1], got {schedule!r}")
    if isinstance(schedule, str | float | int):
        return _parse_scalar(schedule)
    if isinstance(schedule, Sequence) and not isinstance(schedule, bytes | bytearray):
        return IoUSchedule(_parse_steps(schedule))
    raise IoUScheduleError(
        f"IoU schedule must be a string, a number or a list, got {type(schedule).__name__}"
    )


@lru_cache(maxsize=64)
def _parse_scalar(schedule: str | float) -> IoUSchedule:
    if isinstance(schedule, str):
        name = schedule.strip().lower()
        if name == "dynamic":
            return IoUSchedule(DYNAMIC_STEPS)
        if name == "average":
            return IoUSchedule(average=True)
        try:
            value = float(name)
        except ValueError:
            raise IoUScheduleError(
                f"IoU schedule must be 'dynamic', 'average', a threshold in (0, 1] or a list of "
                f"[fraction, threshold] steps, got {schedule!r}"
            ) from None
        return IoUSchedule(((1.0, _check_threshold(value, "the IoU threshold")),))
    return IoUSchedule(((1.0, _check_threshold(schedule, "the IoU threshold")),))


def _parse_steps(schedule: Sequence) -> tuple[tuple[float, float], ...]:
    if not schedule:
        raise IoUScheduleError("IoU schedule steps must not be empty")
    if len(schedule) > 100:
        raise IoUScheduleError(f"IoU schedule has at most 100 steps, got {len(schedule)}")
    steps: list[tuple[float, float]] = []
    for index, pair in enumerate(schedule):
        if isinstance(pair, str | bytes) or not isinstance(pair, Sequence) or len(pair) != 2:
            raise IoUScheduleError(
                f"IoU schedule step {index} must be a [fraction, threshold] pair, got {pair!r}"
            )
        fraction, value = pair
        if not _is_number(fraction) or not 0.0 <= float(fraction) <= 1.0:
            raise IoUScheduleError(
                f"IoU schedule step {index}: fraction must be a number in [0, 1], got {fraction!r}"
            )
        if steps and float(fraction) <= steps[-1][0]:
            raise IoUScheduleError(
                f"IoU schedule step {index}: fractions must increase strictly, got {float(fraction)} "
                f"after {steps[-1][0]}"
            )
        steps.append((float(fraction), _check_threshold(value, f"IoU schedule step {index}: threshold")))
    return tuple(steps)


def iou_threshold(step: int, total_steps: int, schedule: Schedule | IoUSchedule = "dynamic") -> float:
    """The detection IoU threshold ε at ``step`` of ``total_steps`` under ``schedule``.

    Boundaries belong to the earlier stage (``<=``), as in V-Triune's reward server.

    >>> [iou_threshold(s, 100) for s in (0, 10, 11, 25, 26)]
    [0.85, 0.85, 0.95, 0.95, 0.99]
    >>> iou_threshold(3, 10, 0.5)
    0.5
    """
    return parse_schedule(schedule).threshold(step, total_steps)

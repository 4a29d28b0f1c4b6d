"""IoU threshold schedules: V-Triune's dynamic one, fixed, average and user-defined steps."""

from __future__ import annotations

import pytest

from trainer.rewards import IoUScheduleError, iou_threshold, parse_schedule
from trainer.rewards.schedule import AVERAGE_THRESHOLDS


@pytest.mark.parametrize(
    ("step", "total", "expected"),
    [
        (0, 100, 0.85),
        (10, 100, 0.85),  # exactly 10 %: still the first stage (<=)
        (11, 100, 0.95),
        (25, 100, 0.95),  # exactly 25 %: still the second stage (<=)
        (26, 100, 0.99),
        (100, 100, 0.99),
        (150, 100, 0.99),  # past the end: the last stage
        (1, 10, 0.85),  # 1/10 = 0.1 exactly
        (1, 4, 0.95),  # 1/4 = 0.25 exactly
        (0, 1, 0.85),
    ],
)
def test_dynamic_boundaries(step, total, expected):
    assert iou_threshold(step, total) == expected
    assert iou_threshold(step, total, "dynamic") == expected


@pytest.mark.parametrize("value", [0.5, 0.55, 0.75, 0.99, 1.0, "0.75", " 0.6 "])
def test_fixed(value):
    assert iou_threshold(7, 10, value) == float(value)


def test_average_reports_the_mean_of_its_thresholds():
    # (0.5 + 0.55 + ... + 0.95) = 7.25 over ten thresholds, + 0.99 = 8.24; / 11
    assert iou_threshold(3, 10, "average") == pytest.approx(8.24 / 11)
    assert parse_schedule("average").average
    assert len(AVERAGE_THRESHOLDS) == 11


@pytest.mark.parametrize(
    ("schedule", "step", "expected"),
    [
        ([[0.5, 0.7], [1.0, 0.9]], 50, 0.7),  # 50/100 = 0.5 <= 0.5
        ([[0.5, 0.7], [1.0, 0.9]], 51, 0.9),
        ([(0.2, 0.6)], 90, 0.6),  # past the last fraction: the last threshold
        ([[0, 0.5], [0.3, 0.75], [0.8, 0.95]], 0, 0.5),
        ([[0, 0.5], [0.3, 0.75], [0.8, 0.95]], 1, 0.75),
        ([[0, 0.5], [0.3, 0.75], [0.8, 0.95]], 99, 0.95),
    ],
)
def test_user_steps(schedule, step, expected):
    assert iou_threshold(step, 100, schedule) == expected


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (
            "sometimes",
            "IoU schedule must be 'dynamic', 'average', a threshold in (0, 1] or a list of "
            "[fraction, threshold] steps, got 'sometimes'",
        ),
        (1.5, "the IoU threshold must be a number in (0, 1], got 1.5"),
        (0, "the IoU threshold must be a number in (0, 1], got 0"),
        ("-0.5", "the IoU threshold must be a number in (0, 1], got -0.5"),
        (float("nan"), "the IoU threshold must be a number in (0, 1], got nan"),
        (True, "the IoU threshold must be a number in (0, 1], got True"),
        ([], "IoU schedule steps must not be empty"),
        ([[0.5]], "IoU schedule step 0 must be a [fraction, threshold] pair, got [0.5]"),
        (["ab"], "IoU schedule step 0 must be a [fraction, threshold] pair, got 'ab'"),
        ([[1.5, 0.9]], "IoU schedule step 0: fraction must be a number in [0, 1], got 1.5"),
        (
            [[0.5, 0.9], [0.5, 0.95]],
            "IoU schedule step 1: fractions must increase strictly, got 0.5 after 0.5",
        ),
        ([[0.5, 1.2]], "IoU schedule step 0: threshold must be a number in (0, 1], got 1.2"),
        ([[0.5, "x"]], "IoU schedule step 0: threshold must be a number in (0, 1], got 'x'"),
        ({"a": 1}, "IoU schedule must be a string, a number or a list, got dict"),
        ([[i / 200, 0.9] for i in range(101)], "IoU schedule has at most 100 steps, got 101"),
    ],
)
def test_invalid_schedules(schedule, message):
    with pytest.raises(IoUScheduleError) as info:
        parse_schedule(schedule)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("step", "total", "message"),
    [
        (-1, 10, "step must be an int >= 0, got -1"),
        (1.5, 10, "step must be an int >= 0, got 1.5"),
        (1, 0, "total_steps must be an int >= 1, got 0"),
        (1, True, "total_steps must be an int >= 1, got True"),
    ],
)
def test_invalid_progress(step, total, message):
    with pytest.raises(ValueError) as info:
        iou_threshold(step, total)
    assert str(info.value) == message

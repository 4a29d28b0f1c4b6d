"""The bucketing of a downsampled series, by hand: control.selectors.series.bucket_points.

The integration tests check the SQL against this function; here the function is checked against
values worked out by hand.
"""

from __future__ import annotations

import doctest
import random
from datetime import UTC, datetime, timedelta

import pytest

from control.selectors import series
from control.selectors.series import Bucket, bucket_points, bucket_width


def raw(step: int, value: float | None) -> Bucket:
    """A point returned as it is: its own bucket."""
    return Bucket(step, value, value, value, 1)


def test_the_doctests_hold():
    assert doctest.testmod(series).failed == 0


@pytest.mark.parametrize(
    ("start", "end", "max_points", "width"),
    [
        (0, 9999, 1000, 11),  # ceil(10000 / 999) = ceil(10.01)
        (0, 8990, 1000, 9),  # ceil(8991 / 999) = 9 exactly
        (0, 8991, 1000, 10),  # one step more: ceil(8992 / 999)
        (100, 108, 10, 1),  # 9 steps in 9 buckets
        (5, 5, 10, 1),  # a single step
        (0, 2**31 - 1, 10, 238_609_295),  # ceil(2**31 / 9): the widest range of int32 steps
    ],
)
def test_bucket_width(start, end, max_points, width):
    assert bucket_width(start=start, end=end, max_points=max_points) == width


def test_a_single_spike_in_ten_thousand_points_shows_in_its_buckets_max():
    points = [(s, 100.0 if s == 4321 else 0.25) for s in range(10_000)]
    buckets = bucket_points(points, 0, 9999, 1000)
    # w = ceil(10000 / 999) = 11: step 4321 is in bucket 4321 // 11 = 392, steps 4312-4322,
    # whose last point is 4322 (value 0.25).
    spiked = [b for b in buckets if b.max == 100.0]
    assert spiked == [Bucket(4322, 0.25, 0.25, 100.0, 11)]
    # Steps 0-9998 fill buckets 0-908 (9998 // 11 = 908), then 9999 alone: 910 points.
    assert len(buckets) == 910
    assert buckets[0] == Bucket(10, 0.25, 0.25, 0.25, 11)
    assert buckets[-2] == Bucket(9998, 0.25, 0.25, 0.25, 11)  # 9988-9998
    assert sum(b.count for b in buckets) == 10_000


def test_the_last_point_is_always_there_as_it_is():
    points = [(s, float(s)) for s in range(100)]
    # w = ceil(100 / 9) = 12: bucket 8 would hold steps 96-99; 99 is the last, so it stands alone.
    buckets = bucket_points(points, 0, 99, 10)
    assert buckets[-2:] == [Bucket(98, 98.0, 96.0, 98.0, 3), raw(99, 99.0)]
    assert len(buckets) == 10
    # Zoomed to 10-57 (48 steps, w = ceil(48 / 9) = 6): the last point in range is 57.
    zoomed = bucket_points(points, 10, 57, 10)
    assert zoomed[0] == Bucket(15, 15.0, 10.0, 15.0, 6)
    assert zoomed[-2:] == [Bucket(56, 56.0, 52.0, 56.0, 5), raw(57, 57.0)]
    assert sum(b.count for b in zoomed) == 48


def test_the_last_point_of_a_series_that_ends_before_the_range():
    # 20 points at steps 0-19 read over 0-999: w = ceil(1000 / 9) = 112, one bucket holds 0-18.
    buckets = bucket_points([(s, 1.0) for s in range(20)], 0, 999, 10)
    assert buckets == [Bucket(18, 1.0, 1.0, 1.0, 19), raw(19, 1.0)]


@pytest.mark.parametrize(
    ("points", "start", "end"),
    [
        ([], 0, 100),  # no points at all
        ([(s, 1.0) for s in range(10)], 50, 60),  # all before the range
        ([(s, 1.0) for s in range(100, 110)], 0, 99),  # all after it
        ([(s, 1.0) for s in range(10)], 5, 4),  # an empty range
    ],
)
def test_an_empty_range_gives_no_points(points, start, end):
    assert bucket_points(points, start, end, 10) == []


def test_one_point():
    assert bucket_points([(7, 0.5)], 0, 100, 10) == [raw(7, 0.5)]
    assert bucket_points([(7, None)], 0, 100, 10) == [Bucket(7, None, None, None, 1)]


@pytest.mark.parametrize("count", [1, 9, 10])
def test_at_most_max_points_points_come_back_as_they_are(count):
    points = [(3 * s, s / 4) for s in range(count)]  # steps 0, 3, 6, ...: gaps do not matter
    assert bucket_points(points, 0, 1000, 10) == [raw(3 * s, s / 4) for s in range(count)]


def test_one_point_more_than_max_points_is_bucketed():
    # 11 points in 10: w = ceil(11 / 9) = 2, buckets 0-1, 2-3, 4-5, 6-7, 8-9, then 10 alone.
    buckets = bucket_points([(s, float(s)) for s in range(11)], 0, 10, 10)
    assert buckets == [
        Bucket(1, 1.0, 0.0, 1.0, 2),
        Bucket(3, 3.0, 2.0, 3.0, 2),
        Bucket(5, 5.0, 4.0, 5.0, 2),
        Bucket(7, 7.0, 6.0, 7.0, 2),
        Bucket(9, 9.0, 8.0, 9.0, 2),
        raw(10, 10.0),
    ]


def test_nulls_count_but_stay_out_of_min_and_max():
    values = [0.5, None, -1.0, None, None, None, 2.0, None, 0.0, 3.0, 4.0, None]
    # 12 points in 10: w = ceil(12 / 9) = 2; the last point (11, None) stands alone.
    buckets = bucket_points(list(enumerate(values)), 0, 11, 10)
    assert buckets == [
        Bucket(1, None, 0.5, 0.5, 2),  # the last value is null, the spread is the other one
        Bucket(3, None, -1.0, -1.0, 2),
        Bucket(5, None, None, None, 2),  # only nulls: no spread at all
        Bucket(7, None, 2.0, 2.0, 2),
        Bucket(9, 3.0, 0.0, 3.0, 2),
        Bucket(10, 4.0, 4.0, 4.0, 1),
        Bucket(11, None, None, None, 1),
    ]


def test_gaps_in_steps_leave_buckets_out():
    # Steps 0-4 and 90-99 over 0-99, in 10: w = ceil(100 / 9) = 12.
    points = [(s, float(s)) for s in [*range(5), *range(90, 100)]]
    buckets = bucket_points(points, 0, 99, 10)
    assert buckets == [
        Bucket(4, 4.0, 0.0, 4.0, 5),  # bucket 0: 0-11
        Bucket(95, 95.0, 90.0, 95.0, 6),  # bucket 7: 84-95
        Bucket(98, 98.0, 96.0, 98.0, 3),  # bucket 8: 96-107, less its last point
        raw(99, 99.0),
    ]


def test_the_order_of_the_input_does_not_matter():
    points = [(s, float(s % 5)) for s in range(300)]
    shuffled = points[:]
    random.Random(1).shuffle(shuffled)
    assert bucket_points(shuffled, 0, 299, 25) == bucket_points(points, 0, 299, 25)


def test_each_bucket_carries_the_time_of_its_last_point():
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    points = [(s, 1.0, t0 + timedelta(seconds=s)) for s in range(12)]
    buckets = bucket_points(points, 0, 11, 10)
    assert [b.time for b in buckets] == [t0 + timedelta(seconds=s) for s in (1, 3, 5, 7, 9, 10, 11)]
    assert buckets[0].as_dict(with_time=True) == {
        "step": 1,
        "value": 1.0,
        "min": 1.0,
        "max": 1.0,
        "count": 2,
        "time": "2026-01-01T00:00:01+00:00",
    }
    assert "time" not in buckets[0].as_dict()


@pytest.mark.parametrize("seed", range(5))
def test_invariants_on_random_series(seed):
    rng = random.Random(seed)
    steps = sorted(rng.sample(range(20_000), rng.randint(0, 5000)))
    points = [(s, None if rng.random() < 0.05 else rng.gauss(0, 1)) for s in steps]
    start = rng.randint(0, 10_000)
    end = rng.randint(start, 20_000)
    max_points = rng.randint(10, 600)
    inside = [p for p in points if start <= p[0] <= end]

    buckets = bucket_points(points, start, end, max_points)

    assert len(buckets) <= max_points
    assert sum(b.count for b in buckets) == len(inside)
    assert [b.step for b in buckets] == sorted({b.step for b in buckets})
    if len(inside) <= max_points:
        assert buckets == [raw(*p) for p in inside]
    else:
        assert buckets[-1] == raw(*inside[-1])
    # Every bucket against a plain loop over the points of its step interval.
    width = bucket_width(start=start, end=end, max_points=max_points)
    previous = start - 1
    for bucket in buckets[:-1] if len(inside) > max_points else []:
        members = [p for p in inside if previous < p[0] <= bucket.step]
        assert all((p[0] - start) // width == (bucket.step - start) // width for p in members)
        values = [v for _, v in members if v is not None]
        assert bucket == Bucket(
            bucket.step, members[-1][1], min(values, default=None), max(values, default=None), len(members)
        )
        previous = bucket.step

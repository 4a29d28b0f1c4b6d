"""The one place where undefined metric values are decided.

A metric that is undefined for a step (the mean length of correct responses when none is
correct, a rate over an empty set, a NaN loss) is *omitted* from the result, never reported as
NaN, None or 0: a chart then shows a gap instead of a fake value, and JSON stays strict (it
has no NaN). Every public monitor function returns through :func:`finalize`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import SupportsFloat

from trainer.monitor.records import MetricKey, Metrics


def mean(values: Iterable[float]) -> float | None:
    """Arithmetic mean, or None for no values."""
    total = 0.0
    count = 0
    for value in values:
        total += value
        count += 1
    return total / count if count else None


def ratio(numerator: int, denominator: int) -> float | None:
    """``numerator / denominator``, or None when the denominator is 0."""
    return numerator / denominator if denominator else None


def finalize(metrics: Mapping[MetricKey, SupportsFloat | None]) -> Metrics:
    """Drop undefined values (None, NaN, ±inf) and convert the rest to ``float``.

    Keys must be ``(source, key)`` with source a non-empty string or None and key a non-empty
    string; anything else is a programming error and raises ``ValueError``.
    """
    out: Metrics = {}
    for metric_key, value in metrics.items():
        if not (isinstance(metric_key, tuple) and len(metric_key) == 2):
            raise ValueError(f"metric keys are (source, key) pairs, got {metric_key!r}")
        source, key = metric_key
        if not (source is None or (isinstance(source, str) and source)):
            raise ValueError(f"metric source must be a non-empty string or None, got {source!r}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"metric key must be a non-empty string, got {key!r}")
        if value is None:
            continue
        number = float(value)
        if math.isfinite(number):
            out[(source, key)] = number
    return out

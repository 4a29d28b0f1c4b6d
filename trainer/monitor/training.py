"""Global per-step metrics that do not come from samples: the IoU threshold and the update's own.

The policy update reports ``actor/*`` and ``grad_norm/<layer>`` itself; :func:`update_metrics`
passes them through, refusing a key that is not documented so that every logged key stays in
:data:`trainer.monitor.keys.METRIC_DOCS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import SupportsFloat

from trainer.monitor.keys import ACTOR_KEYS, doc_key_of
from trainer.monitor.records import MetricKey, Metrics
from trainer.monitor.values import finalize

IouSchedule = str | float | Sequence[Sequence[float]]
_UPDATE_DOC_KEYS = ACTOR_KEYS | {"grad_norm/<layer>"}


def iou_threshold_metric(step: int, total_steps: int, schedule: IouSchedule = "dynamic") -> Metrics:
    """``detection/iou_threshold``: ε of the detection reward at ``step`` (DESIGN.md §4).

    The value comes from ``trainer.rewards.iou_threshold``, the function the reward uses, so
    the chart shows exactly what was applied (for ``average``, the mean of the thresholds it
    averages over).
    """
    from trainer.rewards import iou_threshold

    return finalize({(None, "detection/iou_threshold"): iou_threshold(step, total_steps, schedule)})


def update_metrics(values: Mapping[str, SupportsFloat | None]) -> Metrics:
    """Pass ``actor/*`` and ``grad_norm/<layer>`` values through as global metrics.

    Raises ``ValueError`` for any other key, naming the known ``actor/`` keys.
    """
    out: dict[MetricKey, SupportsFloat | None] = {}
    for key, value in values.items():
        try:
            doc_key = doc_key_of(key)
        except KeyError:
            doc_key = None
        if doc_key not in _UPDATE_DOC_KEYS:
            known = ", ".join(sorted(_UPDATE_DOC_KEYS))
            raise ValueError(f"unknown update metric {key!r}; known: {known}")
        out[(None, key)] = value
    return finalize(out)

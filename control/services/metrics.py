from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Max

from control.errors import DomainError
from control.models import MetricPoint, Run
from control.services.alerts import alert_rules_evaluate
from control.services.broadcast import broadcast_to_run

logger = logging.getLogger(__name__)

MAX_POINTS_PER_REQUEST = 10_000


@dataclass(frozen=True)
class PointIn:
    step: int
    key: str
    value: float | None
    source: str = ""


def run_group_name(run_id: int) -> str:
    return f"run.{run_id}"


def point_payload(point: MetricPoint | PointIn) -> dict:
    return {"step": point.step, "key": point.key, "source": point.source, "value": point.value}


@transaction.atomic
def metric_points_ingest(*, run: Run, points: Sequence[PointIn]) -> int:
    """Store a batch of points; idempotent on (run, step, source, key): a replayed point overwrites.

    Evaluates the project's alert rules on the new points and broadcasts them to
    the run's channel group once the transaction commits.
    """
    if len(points) > MAX_POINTS_PER_REQUEST:
        raise DomainError(f"at most {MAX_POINTS_PER_REQUEST} points per request, got {len(points)}")
    # The last occurrence of a (step, key, source) wins, as in a replay: one INSERT ... ON CONFLICT
    # cannot update the same row twice.
    latest = {(p.step, p.key, p.source): p for p in points}
    rows = [
        MetricPoint(
            run=run,
            step=p.step,
            key=p.key,
            source=p.source,
            value=p.value if p.value is not None and math.isfinite(p.value) else None,
        )
        for p in latest.values()
    ]
    MetricPoint.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["run", "key", "source", "step"],
        update_fields=["value"],
    )
    top = max((p.step for p in points), default=-1)
    if top > run.last_step:
        Run.objects.filter(pk=run.pk, last_step__lt=top).update(last_step=top)
    alert_rules_evaluate(run=run, points=points)
    payload = [point_payload(row) for row in rows]
    transaction.on_commit(lambda: broadcast_to_run(run.pk, {"type": "metrics.points", "points": payload}))
    return len(rows)


def run_last_step(*, run: Run) -> int:
    top = MetricPoint.objects.filter(run=run).aggregate(m=Max("step"))["m"]
    return -1 if top is None else top

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

from django.db import connection, transaction
from django.db.models import Max

from control.errors import DomainError
from control.models import MetricPoint, Run
from control.pg_arrays import number_array, text_element
from control.services.alerts import alert_rules_evaluate
from control.services.broadcast import broadcast_to_run

logger = logging.getLogger(__name__)

MAX_POINTS_PER_REQUEST = 10_000


class PointIn(NamedTuple):
    """One point to ingest (a named tuple: a batch builds up to 10,000 of them per request)."""

    step: int
    key: str
    value: float | None
    source: str = ""


def run_group_name(run_id: int) -> str:
    return f"run.{run_id}"


def point_payload(point: MetricPoint | PointIn) -> dict:
    return {"step": point.step, "key": point.key, "source": point.source, "value": point.value}


# One statement for the whole batch: four arrays unnested into rows. They travel as PostgreSQL array
# literals, one string each, which psycopg quotes in one call instead of adapting every element.
_UPSERT_SQL = f"""
INSERT INTO {MetricPoint._meta.db_table} (run_id, step, source, key, value, created_at)
SELECT %s, p.step, p.source, p.key, p.value, now()
FROM unnest(%s::integer[], %s::text[], %s::text[], %s::double precision[]) AS p(step, source, key, value)
ON CONFLICT (run_id, key, source, step) DO UPDATE SET value = EXCLUDED.value
"""
_RUN_TOUCH_SQL = f"""
UPDATE {Run._meta.db_table} SET last_step = GREATEST(last_step, %s), last_metric_at = now()
WHERE id = %s RETURNING last_step, last_metric_at
"""


def _finite_or_none(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class _Columns(NamedTuple):
    steps: list[int]
    keys: list[str]
    sources: list[str]
    values: list[float | None]  # non-finite values already None

    def literals(self) -> list[str]:
        """The four array literals of the upsert, in its order: steps, sources, keys, values."""
        quoted = {text: text_element(text) for text in {*self.keys, *self.sources}}
        return [
            number_array(self.steps),
            "{" + ",".join([quoted[source] for source in self.sources]) + "}",
            "{" + ",".join([quoted[key] for key in self.keys]) + "}",
            number_array(self.values),
        ]


def _columns(points: Sequence[PointIn]) -> _Columns:
    """The batch as columns, one row per (step, key, source); the last occurrence of a duplicate wins."""
    # One INSERT ... ON CONFLICT cannot update the same row twice, and a replay overwrites too.
    rows = list({(p.step, p.key, p.source): p for p in points}.values())
    return _Columns(
        steps=[int(p.step) for p in rows],
        keys=[p.key for p in rows],
        sources=[p.source for p in rows],
        values=[_finite_or_none(p.value) for p in rows],
    )


@transaction.atomic
def metric_points_ingest(*, run: Run, points: Sequence[PointIn]) -> int:
    """Store a batch of points; idempotent on (run, step, source, key): a replayed point overwrites.

    Non-finite values are stored as null. Evaluates the project's alert rules on the new
    points and broadcasts them to the run's channel group once the transaction commits.
    """
    if len(points) > MAX_POINTS_PER_REQUEST:
        raise DomainError(f"at most {MAX_POINTS_PER_REQUEST} points per request, got {len(points)}")
    columns = _columns(points)
    top = max(columns.steps, default=-1)
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT_SQL, [run.pk, *columns.literals()])
        # One statement moves the run's last step and says when the points were stored (now() is
        # the transaction's start, the created_at the upsert wrote).
        cursor.execute(_RUN_TOUCH_SQL, [top, run.pk])
        run.last_step, stored = cursor.fetchone()
    previous_metric_at, run.last_metric_at = run.last_metric_at, stored
    alert_rules_evaluate(run=run, points=points, previous_metric_at=previous_metric_at)
    payload = [
        {"step": step, "key": key, "source": source, "value": value}
        for step, key, source, value in zip(*columns, strict=True)
    ]
    event = {"type": "metrics.points", "points": payload, "time": stored.isoformat()}
    transaction.on_commit(lambda: broadcast_to_run(run.pk, event))
    return len(payload)


def run_last_step(*, run: Run) -> int:
    top = MetricPoint.objects.filter(run=run).aggregate(m=Max("step"))["m"]
    return -1 if top is None else top

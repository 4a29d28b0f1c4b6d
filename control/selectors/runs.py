from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import MetricPoint, Run
from control.selectors.projects import visible_to


def runs_list(
    *, user: AbstractBaseUser, project_id: int | None = None, status: str | None = None
) -> QuerySet[Run]:
    qs = visible_to(Run.objects.all(), user=user).prefetch_related("run_sources__data_source")
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if status:
        qs = qs.filter(status=status)
    return qs


def metric_points_after(
    *, run: Run, step: int = -1, key: str | None = None, source: str | None = None
) -> QuerySet[MetricPoint]:
    """Points of ``run`` with a step greater than ``step``, in step order (a reconnecting page's catch-up)."""
    qs = MetricPoint.objects.filter(run=run, step__gt=step)
    if key is not None:
        qs = qs.filter(key=key)
    if source is not None:
        qs = qs.filter(source=source)
    return qs.order_by("step", "key", "source")


def metric_keys(*, run: Run) -> list[tuple[str, str]]:
    """Distinct (key, source) series of a run."""
    return list(
        MetricPoint.objects.filter(run=run).values_list("key", "source").distinct().order_by("key", "source")
    )


STEP_TIME_KEY = "perf/step_time"
ETA_WINDOW = 20


def run_progress(*, run: Run) -> dict:
    """Steps done of total, and an ETA from the mean of the last step times the trainer logged.

    The trainer numbers training steps from 1 (step 0 is the evaluation before training), so
    the last step reported is the number of steps done.
    """
    done = max(run.last_step, 0)
    total = run.total_steps
    fraction = min(done / total, 1.0) if total else 0.0
    eta = None
    if run.status == Run.Status.RUNNING and done < total:
        times = list(
            MetricPoint.objects.filter(run=run, key=STEP_TIME_KEY, source="", value__isnull=False)
            .order_by("-step")
            .values_list("value", flat=True)[:ETA_WINDOW]
        )
        if times:
            eta = round(sum(times) / len(times) * (total - done), 1)
    return {"step": done, "total": total, "fraction": round(fraction, 4), "eta_seconds": eta}


SPARK_KEY = "reward/final"


def runs_recent_values(*, run_ids: list[int], key: str = SPARK_KEY, last: int = 40) -> dict[int, list[float]]:
    """The last ``last`` values of a global metric per run (oldest first), in one query: sparklines."""
    if not run_ids:
        return {}
    from django.db import connection

    sql = """
        SELECT run_id, value FROM (
            SELECT run_id, step, value,
                   row_number() OVER (PARTITION BY run_id ORDER BY step DESC) AS back
            FROM control_metricpoint
            WHERE run_id = ANY(%s) AND key = %s AND source = '' AND value IS NOT NULL
        ) recent
        WHERE back <= %s
        ORDER BY run_id, step
    """
    out: dict[int, list[float]] = {run_id: [] for run_id in run_ids}
    with connection.cursor() as cursor:
        cursor.execute(sql, [list(run_ids), key, last])
        for run_id, value in cursor.fetchall():
            out[run_id].append(value)
    return out

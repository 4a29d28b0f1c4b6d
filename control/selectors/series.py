"""Downsampled metric series: what a chart loads (history, zoom, comparison of runs).

A series is the points of one (run, key, source). Its points in a step range [start, end] are cut
into buckets of equal step width, and each bucket keeps its last point (the step and value a line
chart draws) with the min, max and count of the bucket, so a spike inside a bucket still shows in
its max (W&B's full-fidelity bucketing, not sampling). :func:`bucket_points` is the definition in
plain Python; :func:`series_downsampled` computes the same thing in PostgreSQL, for every series of
a request in one query, walking the unique index (run, key, source, step) of MetricPoint.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db import connection, transaction

from control.errors import DomainError
from control.models import MetricPoint, Run

MAX_KEYS = 100  # metric keys of one request, after glob expansion
MAX_RUNS = 10  # runs compared in one request
DEFAULT_MAX_POINTS = 1000
MIN_MAX_POINTS = 10
MAX_MAX_POINTS = 10_000
GLOB = "*"  # a trailing * matches every key with the prefix before it


class Bucket(NamedTuple):
    """One point of a downsampled series: the last point of its bucket, and the bucket's spread."""

    step: int  # the last step in the bucket
    value: float | None  # the value at that step (None: non-finite at ingest)
    min: float | None  # of the bucket's non-null values; None when all are null
    max: float | None
    count: int  # points in the bucket, nulls included
    time: datetime | None = None  # created_at of the last point (when asked for)

    def as_dict(self, *, with_time: bool = False) -> dict:
        out = {"step": self.step, "value": self.value, "min": self.min, "max": self.max, "count": self.count}
        if with_time:
            out["time"] = self.time.isoformat() if self.time is not None else None
        return out


def bucket_width(*, start: int, end: int, max_points: int) -> int:
    """Steps per bucket: ``ceil((end - start + 1) / (max_points - 1))``, at least 1.

    ``max_points - 1`` buckets cover [start, end]; the series' last point takes the last place of
    the ``max_points`` (see :func:`bucket_points`).

    >>> bucket_width(start=0, end=9999, max_points=1000)  # ceil(10000 / 999)
    11
    """
    return max(1, -(-(end - start + 1) // (max_points - 1)))  # ceil in integers: steps reach 2**31


def _bucket(points: Sequence[tuple]) -> Bucket:
    """The bucket of ``points`` (step order): the last one's step, value and time; min/max of non-nulls."""
    step, value, *time = points[-1]
    values = [p[1] for p in points if p[1] is not None]
    return Bucket(
        step=step,
        value=value,
        min=min(values) if values else None,
        max=max(values) if values else None,
        count=len(points),
        time=time[0] if time else None,
    )


def bucket_points(points: Iterable[tuple], start: int, end: int, max_points: int) -> list[Bucket]:
    """Downsample one series: its points with ``start <= step <= end`` in at most ``max_points`` buckets.

    ``points`` are ``(step, value)`` or ``(step, value, time)`` tuples, one per step, in any order.

    - At most ``max_points`` points in range: every point is its own bucket (min = max = value,
      count 1).
    - More: every point but the last goes to bucket ``(step - start) // w`` with
      ``w = bucket_width(start, end, max_points)`` (``max_points - 1`` buckets of equal step width
      over the whole range, empty ones left out); the last point in range is a bucket of its own,
      as it is, so the end of a series is exact and a live chart appends to it.

    Null values count but do not enter min and max.

    A spike at step 4 of 12 points in 10 (w = ceil(12 / 9) = 2) shows in the max of bucket 4-5;
    bucket 10-11 loses its last point to a bucket of its own:

    >>> buckets = bucket_points([(s, 9.0 if s == 4 else 0.0) for s in range(12)], 0, 11, 10)
    >>> [(b.step, b.max, b.count) for b in buckets]
    [(1, 0.0, 2), (3, 0.0, 2), (5, 9.0, 2), (7, 0.0, 2), (9, 0.0, 2), (10, 0.0, 1), (11, 0.0, 1)]
    """
    inside = sorted((p for p in points if start <= p[0] <= end), key=lambda p: p[0])
    if len(inside) <= max_points:
        return [_bucket([p]) for p in inside]
    width = bucket_width(start=start, end=end, max_points=max_points)
    *rest, last = inside
    groups: dict[int, list[tuple]] = {}
    for point in rest:  # in step order, so the groups come out in step order too
        groups.setdefault((point[0] - start) // width, []).append(point)
    return [*(_bucket(group) for group in groups.values()), _bucket([last])]


@dataclass(frozen=True)
class Series:
    key: str
    source: str  # "" for a global metric
    total: int  # points in range
    points_json: str  # the buckets as a JSON array of Bucket.as_dict(), rendered by PostgreSQL


@dataclass(frozen=True)
class RunSeries:
    run: Run
    start_step: int
    end_step: int
    series: list[Series]  # in (key, source) order, by code point


def split_keys(keys: Sequence[str]) -> tuple[list[str], list[str]]:
    """Exact keys and glob prefixes (``reward/*`` gives ``reward/``; ``*`` alone, every key)."""
    exact = [k for k in keys if not k.endswith(GLOB)]
    prefixes = [k[: -len(GLOB)] for k in keys if k.endswith(GLOB)]
    return exact, prefixes


_TABLE = MetricPoint._meta.db_table

# The points of one series (s) in the step range of its run (r). The range is said as a row
# comparison on (source, step), which only the unique index (run, key, source, step) can use: with a
# plain "step BETWEEN", on a table whose statistics lag behind its inserts (a run that just wrote
# its points, whose run_id is past the histogram), the planner estimated one row either way, took
# the smaller (run, step) index and filtered the whole run for every series: 3 s instead of 0.08 s
# for 150 series of a 100,000-point run (measured). Comparing (key, source, step) as one row costs
# twice as much per point as this.
_IN_RANGE = (
    "m.run_id = s.run_id AND m.key = s.key"
    " AND (m.source, m.step) >= (s.source, r.lo) AND (m.source, m.step) <= (s.source, r.hi)"
)

# Every distinct key of each run by a loose index scan: one descent of the unique index per key,
# instead of reading every point. Only needed for globs; in any collation.
_KEYS_BY_GLOB = f"""
run_keys AS (
    SELECT r.run_id, (SELECT m.key FROM {_TABLE} m WHERE m.run_id = r.run_id ORDER BY m.key LIMIT 1) AS key
    FROM req r
    UNION ALL
    SELECT k.run_id, (
        SELECT m.key FROM {_TABLE} m WHERE m.run_id = k.run_id AND m.key > k.key ORDER BY m.key LIMIT 1
    )
    FROM run_keys k WHERE k.key IS NOT NULL
),
matched AS MATERIALIZED (
    SELECT run_id, key FROM run_keys
    WHERE key = ANY(%(exact)s::text[])
       OR EXISTS (SELECT FROM unnest(%(prefixes)s::text[]) p(prefix) WHERE starts_with(key, p.prefix))
),"""
_KEYS_EXACT = """
matched AS MATERIALIZED (SELECT r.run_id, k.key FROM req r CROSS JOIN unnest(%(exact)s::text[]) k(key)),"""

# Every source of each matched key, by a loose index scan again (one descent per source).
_SOURCES_ALL = f"""
source_scan AS (
    SELECT k.run_id, k.key, (
        SELECT m.source FROM {_TABLE} m WHERE m.run_id = k.run_id AND m.key = k.key
        ORDER BY m.source LIMIT 1
    ) AS source
    FROM matched k WHERE NOT EXISTS (SELECT FROM too_many)
    UNION ALL
    SELECT s.run_id, s.key, (
        SELECT m.source FROM {_TABLE} m WHERE m.run_id = s.run_id AND m.key = s.key AND m.source > s.source
        ORDER BY m.source LIMIT 1
    )
    FROM source_scan s WHERE s.source IS NOT NULL
),
series AS (SELECT run_id, key, source FROM source_scan WHERE source IS NOT NULL)"""
_SOURCES_GIVEN = f"""
series AS (
    SELECT k.run_id, k.key, src.source FROM matched k CROSS JOIN unnest(%(sources)s::text[]) src(source)
    WHERE NOT EXISTS (SELECT FROM too_many)
      AND EXISTS (
        SELECT FROM {_TABLE} m WHERE m.run_id = k.run_id AND m.key = k.key AND m.source = src.source
      )
)"""

# Each bucket as a JSON object, built as text: float8 text is the shortest exact form (what a JSON
# number wants; values are finite or null since ingest), and concatenation costs a quarter less
# than json_build_object on a whole run. Times go through to_json for ISO 8601.
_POINT_JSON = """'{"step": ' || b.step || ', "value": ' || coalesce(b.value::text, 'null')
        || ', "min": ' || coalesce(b.lo::text, 'null') || ', "max": ' || coalesce(b.hi::text, 'null')
        || ', "count": ' || b.n"""
_POINT_TIME_JSON = """ || ', "time": ' || to_json(b.time)::text"""
_LAST_TIME = ", (array_agg(m.created_at ORDER BY m.step DESC))[1] AS time"


def _series_sql(*, globs: bool, sources_given: bool, with_time: bool) -> str:
    """The one query of a request, from its parts.

    Per series: its last step in range (one descent of the index) and whether it holds more than
    max_points points there (an index-only scan of at most max_points + 1 entries, not a count of
    the whole range), then one pass over the range grouped by bucket. The group of a point is its
    step when the series fits in max_points, else -1 for the last point and (step - lo) / width
    for the others: bucket_points() in SQL. The total is the sum of the buckets' counts.

    The last value of a bucket is the second element of the greatest [step, value] array: steps
    are unique in a series, so the step alone orders the arrays, and a plain aggregate needs no
    sort. Rows with a null run_id report too many keys (and no series is read then).
    """
    point = _POINT_JSON + (_POINT_TIME_JSON if with_time else "")
    return f"""
WITH RECURSIVE
req AS (
    SELECT * FROM unnest(%(runs)s::bigint[], %(los)s::integer[], %(his)s::integer[], %(widths)s::bigint[])
        AS r(run_id, lo, hi, width)
),{_KEYS_BY_GLOB if globs else _KEYS_EXACT}
too_many AS (SELECT count(DISTINCT key) AS n FROM matched HAVING count(DISTINCT key) > {MAX_KEYS}),
{_SOURCES_GIVEN if sources_given else _SOURCES_ALL}
SELECT * FROM (
SELECT s.run_id, s.key, s.source, p.total, p.points
FROM series s
JOIN req r ON r.run_id = s.run_id
CROSS JOIN LATERAL (
    SELECT (
        SELECT m.step FROM {_TABLE} m WHERE {_IN_RANGE} ORDER BY m.source DESC, m.step DESC LIMIT 1
    ) AS last,
           EXISTS (SELECT FROM {_TABLE} m WHERE {_IN_RANGE} OFFSET %(max_points)s) AS many
) t
CROSS JOIN LATERAL (
    SELECT '[' || coalesce(string_agg({point} || '}}', ', ' ORDER BY b.step), '') || ']' AS points,
           coalesce(sum(b.n), 0) AS total
    FROM (
        SELECT max(m.step) AS step, (max(ARRAY[m.step::float8, m.value]))[2] AS value,
               min(m.value) AS lo, max(m.value) AS hi, count(*) AS n{_LAST_TIME if with_time else ""}
        FROM {_TABLE} m WHERE {_IN_RANGE}
        GROUP BY CASE
            WHEN NOT t.many THEN m.step
            WHEN m.step = t.last THEN -1
            ELSE (m.step - r.lo) / r.width
        END
    ) b
) p
UNION ALL
SELECT NULL, NULL, NULL, n, NULL FROM too_many
) found
ORDER BY run_id, key COLLATE "C", source COLLATE "C"
"""


def series_range(*, run: Run, start_step: int | None, end_step: int | None) -> tuple[int, int]:
    """The step range read of ``run``: from ``start_step`` (default 0) to ``end_step`` (default the run's
    last step, and never before the start)."""
    start = 0 if start_step is None else start_step
    end = max(run.last_step, start) if end_step is None else end_step
    return start, end


def series_downsampled(
    *,
    runs: Sequence[Run],
    keys: Sequence[str],
    sources: Sequence[str] | None = None,
    max_points: int = DEFAULT_MAX_POINTS,
    start_step: int | None = None,
    end_step: int | None = None,
    with_time: bool = False,
) -> list[RunSeries]:
    """The downsampled series of ``runs`` (in their order) for ``keys`` and ``sources``, in one query.

    ``keys`` are metric keys or globs with a trailing ``*``; ``sources`` None means every source of
    those keys. A series is listed when it holds a point at any step; one with no point in range
    has total 0 and no points. Raises a 400 when the globs match more than MAX_KEYS keys (checked
    in the same query before any series is read).
    """
    if not runs:
        return []
    exact, prefixes = split_keys(keys)
    ranges = [series_range(run=run, start_step=start_step, end_step=end_step) for run in runs]
    sql = _series_sql(globs=bool(prefixes), sources_given=sources is not None, with_time=with_time)
    params = {
        "runs": [run.pk for run in runs],
        "los": [lo for lo, _ in ranges],
        "his": [hi for _, hi in ranges],
        "widths": [bucket_width(start=lo, end=hi, max_points=max_points) for lo, hi in ranges],
        "exact": exact,
        "prefixes": prefixes,
        "sources": list(sources or []),
        "max_points": max_points,
    }
    with transaction.atomic(), connection.cursor() as cursor:
        # The plan's estimated cost grows with the number of series, and past jit_above_cost
        # PostgreSQL would spend more compiling expressions than this query runs (200 ms against
        # ~0.5 s, measured on 300 series): nothing here benefits from JIT. Floats as text must be
        # the shortest exact form (PostgreSQL's default, but a server may set fewer digits).
        cursor.execute("SELECT set_config('jit', 'off', true), set_config('extra_float_digits', '1', true)")
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    found: dict[int, list[Series]] = {run.pk: [] for run in runs}
    for run_id, key, source, total, points in rows:
        if run_id is None:
            message = (
                f"the patterns match {total} metric keys; at most {MAX_KEYS} are allowed in one request: "
                "name fewer keys or narrower patterns"
            )
            raise DomainError(f"keys: {message}", fields={"keys": [message]})
        found[run_id].append(Series(key=key, source=source, total=total, points_json=points))
    return [
        RunSeries(run=run, start_step=lo, end_step=hi, series=found[run.pk])
        for run, (lo, hi) in zip(runs, ranges, strict=True)
    ]

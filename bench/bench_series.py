"""Downsampled series reads of a million-point run: bucketing in SQL against raw reads bucketed in Python.

Usage: .venv/bin/python bench/bench_series.py [--repeat 15] [--keep]

Creates a fresh database on the machine's PostgreSQL (127.0.0.1:5432, user postgres, trust;
``BENCH_PG_URL`` points elsewhere), migrates it and stores one run of 1,667 steps x 600 series
(15 sources x 40 keys) = 1,000,200 points with COPY, then VACUUM ANALYZE as autovacuum would.
Everything runs in this process, against that database:

- ours: ``series_downsampled`` (control/selectors/series.py), one query that buckets in PostgreSQL
  and renders each series' points as JSON, and the whole API request (``GET
  /api/v1/runs/<id>/series/`` through Django's handler: bearer token, permission check, body);
- baseline, measured in the same run: the same series' raw points read in step order (``SELECT
  step, value ... ORDER BY step``; one query for the whole run) and bucketed in Python by
  ``bucket_points``, the reference the tests hold the SQL to. MLflow's get-history has no
  downsampling at all: it returns pages of 25,000 raw points.

Reads, max_points 1000: one series (1,667 points, 834 buckets) and a whole-run request of 20 keys
x 15 sources (300 series, 500,100 points) of that run; and, to show where the work moves, one long
series of a second run (200,000 steps of perf/step_time). Prints the median time of each, ours
next to the baseline, and the ratio. The database is dropped afterwards (``--keep`` keeps it). On a
machine shared with other work, times move; the runs alternate ours and baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import PG_URL, bench_sources, database_create, database_drop  # noqa: E402

STEPS = 1667
LONG_STEPS = 200_000
SOURCES = [f"src_{i:02d}" for i in range(15)]
GROUPS = ["reward", "response_length", "actor", "detection", "eval", "reflection", "perf", "timing"]
KEYS = [f"{group}/{name}" for group in GROUPS for name in ["mean", "max", "min", "std", "clip_ratio"]]
WHOLE_KEYS = KEYS[:20]  # reward/*, response_length/*, actor/*, detection/*
MAX_POINTS = 1000


def world() -> tuple[object, object, str]:
    """Migrate, then a user, a project, a run of 1,000,200 points, a run of one long series, and a
    bearer token of the user."""
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", "--noinput", verbosity=0)
    from django.contrib.auth import get_user_model
    from django.db import connection

    from control.models import MetricPoint, Run
    from control.services.projects import project_create
    from control.services.runs import SourceWeight, run_create
    from control.services.tokens import api_token_create

    user = get_user_model().objects.create_user(username="bench", password="bench-password-123")
    project = project_create(user=user, name="bench")
    (source,) = bench_sources(project, SOURCES[:1])
    run, long_run = (
        run_create(
            project=project, user=user, name=name, sources=[SourceWeight(source, 1.0)], total_steps=steps
        )
        for name, steps in [("a million points", STEPS), ("a long series", LONG_STEPS)]
    )
    rng = random.Random(0)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    table = MetricPoint._meta.db_table
    started = time.perf_counter()
    with connection.cursor() as cursor:
        with cursor.cursor.copy(
            f"COPY {table} (run_id, step, source, key, value, created_at) FROM STDIN"
        ) as copy:
            for step in range(STEPS):
                at = t0 + timedelta(seconds=step)
                for source in SOURCES:
                    for key in KEYS:
                        copy.write_row((run.pk, step, source, key, rng.random(), at))
            for step in range(LONG_STEPS):
                copy.write_row((long_run.pk, step, "", "perf/step_time", rng.random(), t0))
        cursor.execute(f"VACUUM ANALYZE {table}")
    for each, steps in [(run, STEPS), (long_run, LONG_STEPS)]:
        Run.objects.filter(pk=each.pk).update(last_step=steps - 1)
        each.refresh_from_db()
    count = MetricPoint.objects.filter(run=run).count()
    print(
        f"stored {count:,} points in one run and {LONG_STEPS:,} in another in "
        f"{time.perf_counter() - started:.1f} s (COPY, then VACUUM ANALYZE)"
    )
    _, raw = api_token_create(user=user, name="bench")
    return run, long_run, raw


def baseline(run, keys: list[str], sources: list[str]) -> dict:
    """Raw points in step order, one query, bucketed in Python: {(key, source): [Bucket, ...]}."""
    from django.db import connection, transaction

    from control.models import MetricPoint
    from control.selectors.series import bucket_points, series_range

    start, end = series_range(run=run, start_step=None, end_step=None)
    series: dict[tuple[str, str], list[tuple]] = {}
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL jit = off")  # as ours does: neither side pays for JIT
        cursor.execute(
            f"SELECT key, source, step, value FROM {MetricPoint._meta.db_table} "
            "WHERE run_id = %s AND key = ANY(%s) AND source = ANY(%s) AND step BETWEEN %s AND %s "
            "ORDER BY key, source, step",
            [run.pk, keys, sources, start, end],
        )
        for key, source, step, value in cursor.fetchall():
            series.setdefault((key, source), []).append((step, value))
    return {name: bucket_points(points, start, end, MAX_POINTS) for name, points in series.items()}


def ours(run, keys: list[str], sources: list[str]):
    from control.selectors.series import series_downsampled

    return series_downsampled(runs=[run], keys=keys, sources=sources, max_points=MAX_POINTS)


def ms(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repeat", type=int, default=15, help="runs of each read; the whole run gets a third"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()

    name = f"triune_bench_series_{secrets.token_hex(3)}"
    os.environ["DATABASE_URL"] = database_create(name)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "control.settings")
    os.environ.setdefault("TRIUNE_TESTING", "1")  # a development secret key; nothing else changes
    print(f"database {name} on {PG_URL}")
    try:
        run, long_run, token = world()
        from django.db import connections
        from django.test import Client

        client = Client(HTTP_HOST="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {token}")

        def request(on, keys: list[str], sources: list[str]) -> None:
            params = {"keys": ",".join(keys), "sources": ",".join(s or "_global" for s in sources)}
            response = client.get(f"/api/v1/runs/{on.pk}/series/", params)
            assert response.status_code == 200, response.content[:300]

        cases = [
            ("one series (1,667 points -> 834)", run, ["reward/mean"], ["src_03"], args.repeat),
            ("whole run (20 keys x 15 sources)", run, WHOLE_KEYS, SOURCES, max(3, args.repeat // 3)),
            ("long series (200,000 points -> 1000)", long_run, ["perf/step_time"], [""], args.repeat),
        ]
        print(f"max_points {MAX_POINTS}; median of N runs each, ours and the baseline alternating\n")
        print(f"{'read':36} {'N':>3} {'ours: SQL':>11} {'ours: API':>11} {'baseline':>11} {'ratio':>7}")
        for label, on, keys, sources, repeat in cases:
            # The same buckets on both sides, checked once (and everything warm).
            found = ours(on, keys, sources)[0].series
            reference = baseline(on, keys, sources)
            assert [(s.key, s.source) for s in found] == sorted(reference)
            assert all(
                json.loads(s.points_json) == [b.as_dict() for b in reference[(s.key, s.source)]]
                for s in found
            )
            request(on, keys, sources)
            sql_ms, api_ms, base_ms = [], [], []
            for _ in range(repeat):
                sql_ms.append(ms(lambda: ours(on, keys, sources)))  # noqa: B023 - called at once
                base_ms.append(ms(lambda: baseline(on, keys, sources)))  # noqa: B023
                api_ms.append(ms(lambda: request(on, keys, sources)))  # noqa: B023
            sql, api, base = (statistics.median(t) for t in (sql_ms, api_ms, base_ms))
            print(f"{label:36} {repeat:>3} {sql:>8.1f} ms {api:>8.1f} ms {base:>8.1f} ms {base / sql:>6.1f}x")
        print(
            "\nratio: baseline / ours (SQL); 'ours: API' is the whole request in-process, JSON body included"
        )
        connections.close_all()
    finally:
        if args.keep:
            print(f"kept database {name}")
        else:
            database_drop(name)


if __name__ == "__main__":
    main()

"""What the built-in alert rules cost at ingest: metric_points_ingest with and without them.

Two runs of a V-Triune-shaped step, in two projects of one fresh PostgreSQL database: one project
has the built-in rules (control/services/alert_defaults.py: reward drop, truncation, length
explosion, reward errors, non-finite loss, vision/language gradient spikes, stall, failure), the
other none. A step is 15 sources x 36 keys (the rewarded keys the rules watch among them:
reward/final, response_length/mean and clip_ratio, reward_errors and count) plus 60 global points
(actor/*, perf/*, 24 vision and 24 language layers' grad_norm/*): 600 points, ingested in one call
as the HTTP view does, inside its transaction. The steps alternate between the two runs, so both
see the same machine; healthy values (nothing fires). Prints points/s of each side, the cost of the
rules, and the ingest's database queries per step on each side.

    .venv/bin/python bench/bench_alerts.py [--steps 300] [--rounds 3]

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, trust) and Redis on 127.0.0.1:6379 (database 11:
each ingest broadcasts its points to the run's channel group, as in the product); the database is
dropped after the run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import secrets
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_ingest import REDIS_URL, SOURCES, database_create, database_drop  # noqa: E402

STEP_SOURCES = SOURCES[:15]
WATCHED = ["reward/final", "response_length/mean", "response_length/clip_ratio", "reward_errors", "count"]
OTHER = [f"{group}/{name}" for group in ("reward", "detection", "eval") for name in range(10)] + [
    "reward/accuracy"
]
PER_SOURCE = WATCHED + OTHER  # 36 keys
GLOBAL = (
    ["actor/pg_loss", "actor/grad_norm", "actor/entropy", "actor/kl", "perf/step_time", "perf/tokens_per_s"]
    + [f"grad_norm/vision.{i}" for i in range(24)]
    + [f"grad_norm/language.{i}" for i in range(24)]
    + [f"perf/extra_{i}" for i in range(6)]
)  # 60 keys


class Statements:
    """An execute wrapper that counts the SQL statements sent (BEGIN and COMMIT are not statements)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, execute, sql, params, many, context):
        self.n += 1
        return execute(sql, params, many, context)


def step_points(step: int, rng: random.Random):
    from control.services.metrics import PointIn

    points = []
    for i, source in enumerate(STEP_SOURCES):
        healthy = {
            "reward/final": 0.5 + 0.01 * i + rng.gauss(0, 0.02),
            "response_length/mean": 120 + rng.gauss(0, 3),
            "response_length/clip_ratio": 0.04 + rng.random() * 0.02,
            "reward_errors": 0.0,
            "count": 8.0,
        }
        for key in PER_SOURCE:
            points.append(PointIn(step, key, healthy.get(key, rng.random()), source))
    for key in GLOBAL:
        points.append(PointIn(step, key, 1.0 + rng.gauss(0, 0.05), ""))
    return points


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps a run, a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="cProfile of the side with the rules")
    args = parser.parse_args()

    tag = secrets.token_hex(3)
    db = f"bench_alerts_{tag}"
    url = database_create(db)
    os.environ.update(
        DATABASE_URL=url,
        REDIS_URL=REDIS_URL,
        TRIUNE_CHANNEL_PREFIX=f"bench-alerts-{tag}",
        DJANGO_SETTINGS_MODULE="control.settings",
        SECRET_KEY=secrets.token_urlsafe(40),
        TRIUNE_DATA_DIR=f"/tmp/bench-alerts-{tag}",
        LOG_LEVEL="WARNING",
    )
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections, transaction

    from control.models import AlertRule
    from control.services.metrics import metric_points_ingest
    from control.services.projects import project_create
    from control.services.runs import SourceWeight, run_create

    try:
        call_command("migrate", "--noinput", verbosity=0)
        from bench_ingest import bench_sources
        from django.contrib.auth import get_user_model

        user = get_user_model().objects.create_user(username="bench", password=secrets.token_urlsafe(12))
        runs = {}
        for name, defaults in (("without rules", False), ("built-in rules", True)):
            project = project_create(user=user, name=name, default_alerts=defaults)
            sources = bench_sources(project, STEP_SOURCES)
            runs[name] = run_create(
                project=project, user=user, name=name, sources=[SourceWeight(s, 1.0) for s in sources]
            )
        rules = AlertRule.objects.filter(project=runs["built-in rules"].project).count()
        rng = random.Random(0)
        profiler = cProfile.Profile()
        seconds = {name: [] for name in runs}
        queries = {name: 0 for name in runs}
        step = 0
        for _ in range(args.rounds):
            for _ in range(args.steps):
                points = step_points(step, rng)
                order = list(runs.items()) if step % 2 == 0 else list(reversed(runs.items()))
                for name, run in order:
                    if args.profile and name == "built-in rules":
                        profiler.enable()
                    counted = Statements()
                    with connection.execute_wrapper(counted):
                        started = time.perf_counter()
                        with transaction.atomic():
                            metric_points_ingest(run=run, points=points)
                        seconds[name].append(time.perf_counter() - started)
                    profiler.disable()
                    queries[name] = counted.n
                step += 1
        fired = sum(run.alerts.count() for run in runs.values())
        per_step = len(step_points(0, rng))
        print(f"{args.rounds} rounds x {args.steps} steps a run, {per_step} points a step, {rules} rules")
        rates = {}
        for name in runs:
            per_round = [
                per_step * args.steps / sum(seconds[name][r * args.steps : (r + 1) * args.steps])
                for r in range(args.rounds)
            ]
            rates[name] = per_round
            p50 = statistics.median(seconds[name]) * 1000
            print(
                f"{name:<16} {statistics.median(per_round):9,.0f} points/s (rounds: "
                + ", ".join(f"{r:,.0f}" for r in per_round)
                + f"), p50 {p50:.1f} ms a step, {queries[name]} queries a step"
            )
        costs = [1 - w / wo for w, wo in zip(rates["built-in rules"], rates["without rules"], strict=True)]
        met = "met" if statistics.median(costs) < 0.20 else "NOT met"
        print(
            f"cost of the built-in rules: {statistics.median(costs):.1%} of ingest throughput (rounds: "
            + ", ".join(f"{c:.1%}" for c in costs)
            + f"); goal < 20 %: {met}; alerts fired: {fired}"
        )
        if args.profile:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    finally:
        connections.close_all()
        database_drop(db)
    return 0


if __name__ == "__main__":
    sys.exit(main())

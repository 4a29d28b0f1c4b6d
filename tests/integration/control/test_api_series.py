"""The downsampled series API: contract, SQL against bucket_points(), globs, comparison, auth, bad input."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest

from tests.integration.control.helpers import assert_error

pytestmark = pytest.mark.django_db

API = "/api/v1/"
RUN_TOKEN_REFUSED = "a run-scoped token may only write metrics of its own run"
KEY_HELP = (
    "a metric key is 1 to 200 letters, digits or _ . / @ : + - (reward/final), "
    "optionally ending in * for every key with that prefix (reward/*)"
)


def _url(run) -> str:
    return f"{API}runs/{run.pk}/series/"


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


def store(run, points) -> None:
    """Ingest ``(step, key, source, value)`` points through the bulk path, 10,000 a call."""
    from control.services.metrics import MAX_POINTS_PER_REQUEST, PointIn, metric_points_ingest

    batch = [PointIn(step=s, key=k, source=src, value=v) for s, k, src, v in points]
    for i in range(0, len(batch), MAX_POINTS_PER_REQUEST):
        metric_points_ingest(run=run, points=batch[i : i + MAX_POINTS_PER_REQUEST])
    run.refresh_from_db()


def expected(run, key: str, source: str, start: int, end: int, max_points: int, with_time: bool = False):
    """The points bucket_points() makes of the series as stored: the reference of the SQL."""
    from control.models import MetricPoint
    from control.selectors.series import bucket_points

    stored = MetricPoint.objects.filter(run=run, key=key, source=source).values_list(
        "step", "value", "created_at"
    )
    return [b.as_dict(with_time=with_time) for b in bucket_points(list(stored), start, end, max_points)]


def timed(points: list[dict]) -> list[dict]:
    """Points with their ISO 8601 times parsed (PostgreSQL writes .5 where Python writes .500000)."""
    return [{**p, "time": datetime.fromisoformat(p["time"])} if "time" in p else p for p in points]


def get_json(client, url: str, params: dict) -> dict:
    response = client.get(url, params)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/json"
    return response.json()


# The contract, by example --------------------------------------------------------------------------


def test_a_run_with_a_spike_and_a_null_reads_as_worked_out_by_hand(run, owner):
    accuracy = [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, None, 0.0, 0.0, 0.0, 0.5]
    store(run, [(s, "reward/accuracy", "mm_math", v) for s, v in enumerate(accuracy)])
    store(run, [(s, "actor/kl", "", v) for s, v in [(0, 0.01), (5, 0.02), (11, 0.04)]])

    body = get_json(owner, _url(run), {"keys": "reward/accuracy,actor/kl", "max_points": 10})

    # reward/accuracy: 12 points in 10, so w = ceil(12 / 9) = 2: buckets 0-1, 2-3, ..., 10 (11 is
    # the last point, alone). The spike at 4 shows in the max of 4-5, the null at 7 is the value
    # of 6-7 but not its min. actor/kl has 3 points: as they are.
    assert body == {
        "run": run.pk,
        "x": "step",
        "start_step": 0,
        "end_step": 11,
        "series": [
            {
                "key": "actor/kl",
                "source": "",
                "points": [
                    {"step": 0, "value": 0.01, "min": 0.01, "max": 0.01, "count": 1},
                    {"step": 5, "value": 0.02, "min": 0.02, "max": 0.02, "count": 1},
                    {"step": 11, "value": 0.04, "min": 0.04, "max": 0.04, "count": 1},
                ],
                "total": 3,
            },
            {
                "key": "reward/accuracy",
                "source": "mm_math",
                "points": [
                    {"step": 1, "value": 0.0, "min": 0.0, "max": 0.0, "count": 2},
                    {"step": 3, "value": 0.0, "min": 0.0, "max": 0.0, "count": 2},
                    {"step": 5, "value": 0.0, "min": 0.0, "max": 1.0, "count": 2},
                    {"step": 7, "value": None, "min": 0.0, "max": 0.0, "count": 2},
                    {"step": 9, "value": 0.0, "min": 0.0, "max": 0.0, "count": 2},
                    {"step": 10, "value": 0.0, "min": 0.0, "max": 0.0, "count": 1},
                    {"step": 11, "value": 0.5, "min": 0.5, "max": 0.5, "count": 1},
                ],
                "total": 12,
            },
        ],
        "last_step": 11,
    }


def test_a_zoomed_range_with_times(run, owner):
    store(run, [(s, "reward/final", "geo", s / 10) for s in range(40)])
    body = get_json(
        owner,
        _url(run),
        {"keys": "reward/final", "start_step": 5, "end_step": 30, "max_points": 10, "x": "time"},
    )
    assert (body["x"], body["start_step"], body["end_step"], body["last_step"]) == ("time", 5, 30, 39)
    (series,) = body["series"]
    # 26 points in 10: w = ceil(26 / 9) = 3, buckets 5-7, 8-10, ..., 29-31 less 30, then 30 alone.
    assert series["total"] == 26
    assert [p["step"] for p in series["points"]] == [7, 10, 13, 16, 19, 22, 25, 28, 29, 30]
    assert [p["count"] for p in series["points"]] == [3, 3, 3, 3, 3, 3, 3, 3, 1, 1]
    assert timed(series["points"]) == timed(expected(run, "reward/final", "geo", 5, 30, 10, with_time=True))


def test_a_series_without_points_in_range_is_listed_empty_and_a_run_without_points_has_none(
    run, make_run, project, owner
):
    store(run, [(s, "reward/final", "geo", 1.0) for s in range(10)])
    body = get_json(owner, _url(run), {"keys": "reward/final", "start_step": 20})
    # Past the last step the range is empty: it starts at 20 and ends there too.
    assert (body["start_step"], body["end_step"], body["last_step"]) == (20, 20, 9)
    assert body["series"] == [{"key": "reward/final", "source": "geo", "points": [], "total": 0}]

    empty = make_run(project)
    body = get_json(owner, _url(empty), {"keys": "*"})
    assert body == {
        "run": empty.pk,
        "x": "step",
        "start_step": 0,
        "end_step": 0,
        "series": [],
        "last_step": -1,
    }


def test_values_of_every_magnitude_and_odd_source_names_come_back_exactly(run, owner):
    values = [1e-300, 5e-324, 1.7976931348623157e308, -2.5e-7, 0.1, 1 / 3, 123456789.123, -0.0, 1e16, None]
    source = 'a "quoted", back\\slashed, é 🙂 source'
    store(run, [(s, "reward/final", source, v) for s, v in enumerate(values)])
    body = get_json(owner, _url(run), {"keys": "reward/final", "sources": source.replace(",", "")})
    assert body["series"] == []  # a source name is matched whole
    store(run, [(0, "reward/final", "plain", 1.0)])
    body = get_json(owner, _url(run), {"keys": "reward/*"})
    assert [s["source"] for s in body["series"]] == [source, "plain"]
    points = body["series"][0]["points"]
    assert [p["value"] for p in points] == values
    # Exact doubles; integral ones may come as JSON integers (1e16, -0.0 as 0), as equal numbers.
    assert [(p["min"], p["max"]) for p in points] == [(v, v) for v in values]


# SQL against bucket_points() -----------------------------------------------------------------------

KEYS = ["reward/final", "reward/format", "actor/kl"]
SOURCES = ["mm_math", "v3det", ""]


def random_run_points(rng: random.Random) -> list[tuple]:
    """Series of random length with gaps in their steps, nulls and spikes; some series missing."""
    points = []
    for key in KEYS:
        for source in SOURCES:
            if rng.random() < 0.2:
                continue
            steps = rng.sample(range(6000), rng.choice([1, 5, rng.randint(0, 3000), rng.randint(1000, 5000)]))
            for step in steps:
                roll = rng.random()
                value = None if roll < 0.05 else rng.gauss(0, 1) * (1000 if roll > 0.995 else 1)
                points.append((step, key, source, value))
    return points


@pytest.mark.parametrize("seed", range(4))
def test_the_sql_buckets_as_bucket_points_does_on_random_series(seed, make_run, project, owner):
    rng = random.Random(seed)
    run = make_run(project)
    points = random_run_points(rng)
    store(run, points)
    stored = sorted({(k, s) for _, k, s, _ in points})

    for _ in range(6):
        max_points = rng.choice([10, 11, rng.randint(10, 400), 1000])
        params = {"keys": ",".join(KEYS), "max_points": max_points}
        start, end = 0, run.last_step
        if rng.random() < 0.6:  # zoomed
            start = rng.randint(0, 5000)
            end = rng.randint(start, 6500)
            params.update(start_step=start, end_step=end)
        with_time = rng.random() < 0.3
        if with_time:
            params["x"] = "time"
        if rng.random() < 0.4:
            chosen = sorted(rng.sample(SOURCES, 2))
            params["sources"] = ",".join(s or "_global" for s in chosen)
        else:
            chosen = SOURCES

        body = get_json(owner, _url(run), params)

        assert (body["start_step"], body["end_step"]) == (start, end)
        assert [(s["key"], s["source"]) for s in body["series"]] == [(k, s) for k, s in stored if s in chosen]
        for series in body["series"]:
            reference = expected(run, series["key"], series["source"], start, end, max_points, with_time)
            assert timed(series["points"]) == timed(reference), (series["key"], series["source"], params)
            assert series["total"] == sum(p["count"] for p in reference)
            assert len(series["points"]) <= max_points


def test_a_run_of_a_million_points(make_run, project, owner):
    """1,667 steps x 600 series (15 sources x 40 keys), stored with COPY; read whole, by series, zoomed."""
    from django.db import connection

    from control.models import MetricPoint, Run

    sources = [f"src_{i:02d}" for i in range(15)]
    groups = ["reward", "response_length", "actor", "detection", "eval", "reflection", "perf", "timing"]
    keys = [f"{g}/{n}" for g in groups for n in ["mean", "max", "min", "std", "clip"]]
    run = make_run(project, total_steps=1667)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rng = random.Random(7)
    with connection.cursor() as cursor:
        copy_sql = (
            f"COPY {MetricPoint._meta.db_table} (run_id, step, source, key, value, created_at) FROM STDIN"
        )
        with cursor.cursor.copy(copy_sql) as copy:
            for step in range(1667):
                at = t0 + timedelta(seconds=step)
                for source in sources:
                    for key in keys:
                        copy.write_row((run.pk, step, source, key, rng.random(), at))
        cursor.execute(f"ANALYZE {MetricPoint._meta.db_table}")
    Run.objects.filter(pk=run.pk).update(last_step=1666)
    run.refresh_from_db()
    assert MetricPoint.objects.filter(run=run).count() == 1_000_200

    queries = []

    def capture(execute, sql, params, many, context):
        queries.append((sql, params))
        return execute(sql, params, many, context)

    # One series: 1,667 points in 1,000, w = ceil(1667 / 999) = 2: buckets 0-1, ..., 1664-1665, then 1666.
    with connection.execute_wrapper(capture):
        body = get_json(owner, _url(run), {"keys": "reward/mean", "sources": "src_03"})
    (series,) = body["series"]
    assert (series["total"], len(series["points"])) == (1667, 834)
    assert series["points"] == expected(run, "reward/mean", "src_03", 0, 1666, 1000)
    # The series is read through the unique index (run, key, source, step), never by a scan of the table.
    sql, params = next(q for q in queries if "GROUP BY CASE" in q[0])
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql, params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "metric_point_unique" in plan and "Seq Scan" not in plan, plan

    # 20 keys x 15 sources in one request, every series downsampled.
    body = get_json(owner, _url(run), {"keys": "reward/*,response_length/*,actor/*,detection/*"})
    assert len(body["series"]) == 300
    assert {(s["total"], len(s["points"])) for s in body["series"]} == {(1667, 834)}
    for series in random.Random(1).sample(body["series"], 8):
        assert series["points"] == expected(run, series["key"], series["source"], 0, 1666, 1000)

    # Zoomed, with times: 501 points in 100, w = ceil(501 / 99) = 6.
    params = {"keys": "perf/max", "sources": "src_14", "start_step": 700, "end_step": 1200, "max_points": 100}
    body = get_json(owner, _url(run), {**params, "x": "time"})
    (series,) = body["series"]
    assert series["total"] == 501 and len(series["points"]) == 85  # 84 buckets over 700-1199, then 1200
    reference = expected(run, "perf/max", "src_14", 700, 1200, 100, with_time=True)
    assert timed(series["points"]) == timed(reference)
    assert series["points"][-1]["time"] == (t0 + timedelta(seconds=1200)).isoformat()


# Keys, globs and sources ---------------------------------------------------------------------------


@pytest.fixture
def keyed_run(run):
    keys = ["reward/final", "reward/format", "reward", "reward_model/x", "actor/kl", "eval/reward/final"]
    store(run, [(s, key, src, 1.0) for s in range(3) for key in keys for src in ("geo", "chart")])
    store(run, [(s, "actor/lr", "", 1e-6) for s in range(3)])
    return run


@pytest.mark.parametrize(
    ("params", "series"),
    [
        ({"keys": "reward/*", "sources": "geo"}, [("reward/final", "geo"), ("reward/format", "geo")]),
        (
            {"keys": "reward*", "sources": "geo"},
            [("reward", "geo"), ("reward/final", "geo"), ("reward/format", "geo"), ("reward_model/x", "geo")],
        ),
        (
            {"keys": "reward/final,reward/*,reward/final", "sources": "chart"},
            [("reward/final", "chart"), ("reward/format", "chart")],
        ),
        ({"keys": "actor/*"}, [("actor/kl", "chart"), ("actor/kl", "geo"), ("actor/lr", "")]),
        ({"keys": "actor/*", "sources": "_global"}, [("actor/lr", "")]),
        (
            {"keys": "*", "sources": "_global,geo,chart,_global"},
            [
                ("actor/kl", "chart"),
                ("actor/kl", "geo"),
                ("actor/lr", ""),
                ("eval/reward/final", "chart"),
                ("eval/reward/final", "geo"),
                ("reward", "chart"),
                ("reward", "geo"),
                ("reward/final", "chart"),
                ("reward/final", "geo"),
                ("reward/format", "chart"),
                ("reward/format", "geo"),
                ("reward_model/x", "chart"),
                ("reward_model/x", "geo"),
            ],
        ),
        ({"keys": "reward/final", "sources": "nowhere"}, []),
        ({"keys": "no/such/key"}, []),
        ({"keys": "no/such/*"}, []),
        # Sources are compared as text, never run as SQL.
        ({"keys": "*", "sources": "geo') OR 1=1; DROP TABLE control_metricpoint; --"}, []),
    ],
)
def test_keys_globs_and_sources_select_series_in_key_source_order(params, series, keyed_run, owner):
    from control.models import MetricPoint

    body = get_json(owner, _url(keyed_run), params)
    assert [(s["key"], s["source"]) for s in body["series"]] == series
    assert MetricPoint.objects.filter(run=keyed_run).count() == 6 * 2 * 3 + 3


def test_a_hundred_keys_after_expansion_are_served_and_one_more_is_400(run, owner):
    store(run, [(0, f"grad_norm/layer.{i:03d}", "", 1.0) for i in range(101)])
    # layer.000 to layer.099: 100 keys.
    assert len(get_json(owner, _url(run), {"keys": "grad_norm/layer.0*"})["series"]) == 100
    listed = ",".join(f"grad_norm/layer.{i:03d}" for i in range(100))
    assert len(get_json(owner, _url(run), {"keys": listed})["series"]) == 100
    message = (
        "the patterns match 101 metric keys; at most 100 are allowed in one request: "
        "name fewer keys or narrower patterns"
    )
    for keys in ["grad_norm/*", "grad_norm/layer.0*,grad_norm/layer.100", "*"]:
        for url, extra in [(_url(run), {}), (f"{API}series/", {"runs": run.pk})]:
            body = assert_error(
                owner.get(url, {"keys": keys, **extra}), 400, code="invalid", message=f"keys: {message}"
            )
            assert body["extra"]["fields"] == {"keys": [message]}


# Several runs --------------------------------------------------------------------------------------


def test_several_runs_come_in_the_order_asked_each_as_its_own_read(project, make_run, owner):
    a, b = make_run(project), make_run(project)
    store(a, [(s, "reward/final", src, s * 0.5) for s in range(50) for src in ("geo", "chart")])
    store(b, [(s, "reward/final", "geo", -s) for s in range(0, 300, 3)])
    params = {"keys": "reward/*", "max_points": 20}

    body = get_json(owner, f"{API}series/", {"runs": f"{b.pk},{a.pk},{b.pk}", **params})

    assert body == {"runs": [get_json(owner, _url(b), params), get_json(owner, _url(a), params)]}
    assert [r["end_step"] for r in body["runs"]] == [297, 49]  # each run's own range and buckets
    assert [len(r["series"]) for r in body["runs"]] == [1, 2]


def test_runs_are_compared_with_times_and_a_zoom(project, make_run, owner):
    a, b = make_run(project), make_run(project)
    for run in (a, b):
        store(run, [(s, "actor/kl", "", s / 100) for s in range(100)])
    body = get_json(
        owner,
        f"{API}series/",
        {"runs": f"{a.pk},{b.pk}", "keys": "actor/kl", "sources": "_global", "start_step": 10, "x": "time"},
    )
    for run, part in zip((a, b), body["runs"], strict=True):
        assert (part["run"], part["x"], part["start_step"], part["end_step"]) == (run.pk, "time", 10, 99)
        assert timed(part["series"][0]["points"]) == timed(expected(run, "actor/kl", "", 10, 99, 1000, True))


# Who may read --------------------------------------------------------------------------------------


@pytest.fixture
def read_run(run):
    store(run, [(s, "reward/final", "geo", 0.5) for s in range(3)])
    return run


def test_a_viewer_and_a_signed_in_session_read(read_run, viewer, client_for, client):
    client.force_login(viewer)
    for reader in (client_for(viewer), client):
        for url, params in [(_url(read_run), {}), (f"{API}series/", {"runs": read_run.pk})]:
            body = get_json(reader, url, {"keys": "reward/final", **params})
            run_part = body["runs"][0] if "runs" in body else body
            assert run_part["series"][0]["total"] == 3


@pytest.mark.parametrize("route", ["run", "compare"])
def test_unauthenticated_is_401(route, read_run, api_client):
    url = _url(read_run) if route == "run" else f"{API}series/"
    response = api_client.get(url, {"keys": "reward/final", "runs": read_run.pk})
    assert_error(
        response, 401, code="not_authenticated", message="Authentication credentials were not provided."
    )


@pytest.mark.parametrize("route", ["run", "compare"])
def test_a_run_scoped_token_is_refused_even_for_its_own_run(route, read_run, run_client_for):
    url = _url(read_run) if route == "run" else f"{API}series/"
    response = run_client_for(read_run).get(url, {"keys": "reward/final", "runs": read_run.pk})
    assert_error(response, 403, code="permission_denied", message=RUN_TOKEN_REFUSED)


def test_a_stranger_gets_404_and_nothing_of_the_run(read_run, other_user, make_project, make_run, client_for):
    stranger = client_for(other_user)
    message = f"run {read_run.pk} does not exist or is not in one of your projects"
    # Bad parameters or none: the run is looked up first, so nothing tells a stranger it exists.
    for params in ({"keys": "reward/final"}, {}, {"keys": "bad key"}):
        assert_error(stranger.get(_url(read_run), params), 404, code="not_found", message=message)
    own = make_run(make_project(other_user))
    response = stranger.get(f"{API}series/", {"runs": f"{own.pk},{read_run.pk}", "keys": "reward/final"})
    assert_error(response, 404, code="not_found", message=message)


@pytest.mark.parametrize("missing", ["foreign_first", "missing"])
def test_every_compared_run_must_be_visible_and_the_first_that_is_not_is_named(
    missing, read_run, other_user, make_project, make_run, owner
):
    foreign = make_run(make_project(other_user))
    ids = {"foreign_first": [foreign.pk, 987654], "missing": [987654, foreign.pk]}[missing]
    response = owner.get(f"{API}series/", {"runs": ",".join(map(str, [read_run.pk, *ids])), "keys": "*"})
    assert_error(
        response,
        404,
        code="not_found",
        message=f"run {ids[0]} does not exist or is not in one of your projects",
    )


# Bad input -----------------------------------------------------------------------------------------

KEYS_EXAMPLE = "e.g. keys=reward/final,reward/*"
SQL_KEY = "reward/final'; DROP TABLE control_metricpoint; --"


@pytest.mark.parametrize(
    ("params", "field", "message"),
    [
        ({}, "keys", f"required: the metric keys to read, {KEYS_EXAMPLE}"),
        ({"keys": ""}, "keys", f"must list one or more items separated by commas, {KEYS_EXAMPLE}"),
        (
            {"keys": "reward/final,,actor/kl"},
            "keys",
            f"an empty item: separate items by single commas, {KEYS_EXAMPLE}",
        ),
        (
            {"keys": ",".join(f"k/{i}" for i in range(101))},
            "keys",
            "at most 100 keys in one request, got 101",
        ),
        ({"keys": "reward/\x00final"}, "keys", "must not contain NUL characters"),
        ({"keys": "x" * 10_000}, "keys", f"{'x' * 50!r} is not a metric key: {KEY_HELP}"),
        ({"keys": SQL_KEY}, "keys", f"{SQL_KEY[:50]!r} is not a metric key: {KEY_HELP}"),
        ({"keys": "re*ward"}, "keys", f"'re*ward' is not a metric key: {KEY_HELP}"),
        ({"keys": "reward/**"}, "keys", f"'reward/**' is not a metric key: {KEY_HELP}"),
        ({"keys": "reward/ final"}, "keys", f"'reward/ final' is not a metric key: {KEY_HELP}"),
        (
            {"keys": "*", "sources": ""},
            "sources",
            "must list one or more items separated by commas, e.g. sources=mm_math,_global",
        ),
        (
            {"keys": "*", "sources": "geo,"},
            "sources",
            "an empty item: separate items by single commas, e.g. sources=mm_math,_global",
        ),
        (
            {"keys": "*", "sources": "s" * 201},
            "sources",
            f"{'s' * 50!r}... is longer than a source name (200 at most)",
        ),
        (
            {"keys": "*", "sources": ",".join(["geo"] * 201)},
            "sources",
            "at most 200 sources in one request, got 201",
        ),
        ({"keys": "*", "max_points": 0}, "max_points", "must be between 10 and 10000, got 0"),
        ({"keys": "*", "max_points": 9}, "max_points", "must be between 10 and 10000, got 9"),
        ({"keys": "*", "max_points": 10001}, "max_points", "must be between 10 and 10000, got 10001"),
        ({"keys": "*", "max_points": "x"}, "max_points", "must be an integer, got 'x'"),
        ({"keys": "*", "max_points": "1e3"}, "max_points", "must be an integer, got '1e3'"),
        (
            {"keys": "*", "start_step": 10, "end_step": 5},
            "start_step",
            "must not be greater than end_step, got 10 > 5",
        ),
        ({"keys": "*", "start_step": -1}, "start_step", "must be 0 or more, got -1"),
        ({"keys": "*", "end_step": "abc"}, "end_step", "must be an integer, got 'abc'"),
        ({"keys": "*", "end_step": 2**31}, "end_step", "out of range"),
        ({"keys": "*", "x": "other"}, "x", "must be one of step, time, got 'other'"),
        ({"keys": "*", "x": "Time"}, "x", "must be one of step, time, got 'Time'"),
    ],
)
def test_bad_input_is_400_with_a_message_that_says_what_to_change(params, field, message, read_run, owner):
    for url, extra in [(_url(read_run), {}), (f"{API}series/", {"runs": read_run.pk})]:
        body = assert_error(
            owner.get(url, {**params, **extra}), 400, code="invalid", message=f"{field}: {message}"
        )
        assert body["extra"]["fields"] == {field: [message]}


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        (None, "required: the ids of the runs to compare, e.g. runs=12,15"),
        ("", "must list one or more items separated by commas, e.g. runs=12,15"),
        ("1,,2", "an empty item: separate items by single commas, e.g. runs=12,15"),
        ("1;DROP TABLE control_run", "'1;DROP TABLE control_run' is not a run id"),
        ("-1", "'-1' is not a run id"),
        ("١٢", "'١٢' is not a run id"),  # digits, but not ASCII ones
        ("9" * 19, f"{'9' * 19!r} is not a run id"),
        (",".join(str(i) for i in range(1, 12)), "at most 10 runs in one request, got 11"),
    ],
)
def test_bad_run_lists_are_400(runs, message, read_run, owner):
    params = {"keys": "*"} if runs is None else {"keys": "*", "runs": runs}
    body = assert_error(owner.get(f"{API}series/", params), 400, code="invalid", message=f"runs: {message}")
    assert body["extra"]["fields"] == {"runs": [message]}

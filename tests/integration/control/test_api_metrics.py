"""Metric ingest and read-back through the REST API: idempotency, order, limits, last_step."""

from __future__ import annotations

import json

import pytest

from tests.integration.control.helpers import assert_error

pytestmark = pytest.mark.django_db


def _url(run) -> str:
    return f"/api/v1/runs/{run.pk}/metrics/"


def _point(step: int, key: str = "reward/final", value: float | None = 0.5, source: str | None = "geo"):
    return {"step": step, "key": key, "source": source, "value": value}


def _rows(run) -> list[tuple]:
    from control.models import MetricPoint

    return list(
        MetricPoint.objects.filter(run=run)
        .order_by("step", "key", "source")
        .values_list("step", "key", "source", "value")
    )


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


def test_a_batch_is_stored_and_read_back_in_step_order(run, owner):
    points = [
        _point(2, value=0.2),
        _point(0, value=0.0),
        _point(1, value=0.1),
        _point(1, key="actor/lr", source=None, value=1e-6),
    ]
    response = owner.post(_url(run), {"points": points}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 4}
    body = owner.get(_url(run)).json()
    # Ordered by step, then key, then source; a null source is a global metric ("").
    assert body["results"] == [
        {"step": 0, "source": "geo", "key": "reward/final", "value": 0.0},
        {"step": 1, "source": "", "key": "actor/lr", "value": 1e-6},
        {"step": 1, "source": "geo", "key": "reward/final", "value": 0.1},
        {"step": 2, "source": "geo", "key": "reward/final", "value": 0.2},
    ]


def test_replaying_a_batch_keeps_one_row_per_point_and_overwrites_the_value(run, owner):
    first = [_point(0, value=0.1), _point(1, value=0.2), _point(1, source="chart", value=0.3)]
    assert owner.post(_url(run), {"points": first}, format="json").json() == {"accepted": 3}
    assert owner.post(_url(run), {"points": first}, format="json").json() == {"accepted": 3}
    assert _rows(run) == [
        (0, "reward/final", "geo", 0.1),
        (1, "reward/final", "chart", 0.3),
        (1, "reward/final", "geo", 0.2),
    ]
    # A replay with new values (a spooled batch sent again after a retry) overwrites.
    again = [_point(1, value=0.9), _point(1, source="chart", value=None)]
    assert owner.post(_url(run), {"points": again}, format="json").status_code == 200
    assert _rows(run) == [
        (0, "reward/final", "geo", 0.1),
        (1, "reward/final", "chart", None),
        (1, "reward/final", "geo", 0.9),
    ]


def test_the_same_point_twice_in_one_batch_keeps_the_last_value(run, owner):
    points = [_point(3, value=0.1), _point(4, value=0.4), _point(3, value=0.7)]
    response = owner.post(_url(run), {"points": points}, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 2}
    assert _rows(run) == [(3, "reward/final", "geo", 0.7), (4, "reward/final", "geo", 0.4)]


def test_null_values_are_kept_as_null(run, owner):
    response = owner.post(_url(run), {"points": [_point(0, value=None)]}, format="json")
    assert response.status_code == 200
    assert owner.get(_url(run)).json()["results"] == [
        {"step": 0, "source": "geo", "key": "reward/final", "value": None}
    ]


@pytest.mark.parametrize(
    ("query", "expected_steps"),
    [
        ({"after_step": "1"}, [2, 3]),
        ({"after_step": "-1"}, [0, 1, 2, 3]),
        ({"after_step": "3"}, []),
        ({"after_step": "1000"}, []),
        ({}, [0, 1, 2, 3]),
    ],
)
def test_points_after_a_step_come_in_order(query, expected_steps, run, owner, ingest):
    ingest(run, *[(s, "reward/final", "geo", s / 10) for s in (3, 1, 0, 2)])
    body = owner.get(_url(run), query).json()
    assert [p["step"] for p in body["results"]] == expected_steps


def test_points_filter_by_key_and_source(run, owner, ingest):
    ingest(
        run,
        (0, "reward/final", "geo", 0.1),
        (0, "reward/final", "chart", 0.2),
        (0, "actor/lr", "", 1e-6),
        (1, "reward/final", "geo", 0.3),
    )

    def got(**query):
        return [(p["step"], p["key"], p["source"]) for p in owner.get(_url(run), query).json()["results"]]

    assert got(key="reward/final", source="geo") == [(0, "reward/final", "geo"), (1, "reward/final", "geo")]
    assert got(source="") == [(0, "actor/lr", "")]  # an empty source selects the global metrics
    assert got(key="actor/lr") == [(0, "actor/lr", "")]
    assert got(key="reward/final", after_step="0") == [(1, "reward/final", "geo")]
    assert got(key="missing") == []


def test_last_step_follows_the_highest_step_and_never_goes_back(run, owner):
    def last_step():
        return owner.get(f"/api/v1/runs/{run.pk}/").json()["last_step"]

    assert last_step() == -1
    owner.post(_url(run), {"points": [_point(4), _point(2)]}, format="json")
    assert last_step() == 4
    # A late batch of older steps (a spool replay) does not move it back.
    owner.post(_url(run), {"points": [_point(1)]}, format="json")
    assert last_step() == 4
    owner.post(_url(run), {"points": [_point(9)]}, format="json")
    assert last_step() == 9


def test_a_run_scoped_token_ingests_and_moves_last_step(run, run_client_for, owner):
    job = run_client_for(run)
    response = job.post(_url(run), {"points": [_point(7, value=0.25)]}, format="json")
    assert response.json() == {"accepted": 1}
    assert owner.get(f"/api/v1/runs/{run.pk}/").json()["last_step"] == 7
    assert_error(job.get(_url(run)), 403, message="a run-scoped token may only write metrics of its own run")


def test_ten_thousand_points_are_accepted_and_one_more_is_400(run, owner):
    from control.models import MetricPoint

    # 10,000 = 2,500 steps x 4 keys: the largest batch.
    keys = ["reward/final", "reward/accuracy", "reward/format", "response_length/mean"]
    points = [{"step": s, "key": k, "source": "geo", "value": s * 0.001} for s in range(2500) for k in keys]
    response = owner.post(_url(run), {"points": points}, format="json")
    assert response.json() == {"accepted": 10_000}
    assert MetricPoint.objects.filter(run=run).count() == 10_000
    too_many = [*points, _point(2500)]
    response = owner.post(_url(run), {"points": too_many}, format="json")
    assert_error(
        response, 400, code="invalid", message="points: Ensure this field has no more than 10000 elements."
    )
    assert MetricPoint.objects.filter(run=run).count() == 10_000


@pytest.mark.parametrize(
    ("point", "message"),
    [
        (_point(-1), "points: 0: step: Ensure this value is greater than or equal to 0."),
        (_point(0, key="reward final"), "points: 0: key: This value does not match the required pattern."),
        (_point(0, key="reward/\tfinal"), "points: 0: key: This value does not match the required pattern."),
        (_point(0, key="reward\nfinal"), "points: 0: key: This value does not match the required pattern."),
    ],
)
def test_a_negative_step_or_a_key_with_spaces_is_400(point, message, run, owner):
    response = owner.post(_url(run), {"points": [point]}, format="json")
    assert_error(response, 400, code="invalid", message=message)
    assert _rows(run) == []


@pytest.mark.parametrize(
    "key",
    ["reward/final", "detection/iou@50", "grad_norm/model.layers.0", "eval/reward:final", "a-b+c", "x" * 200],
)
def test_metric_keys_of_the_design_are_accepted(key, run, owner):
    response = owner.post(_url(run), {"points": [_point(0, key=key)]}, format="json")
    assert response.status_code == 200, response.content
    assert _rows(run) == [(0, key, "geo", 0.5)]


def test_points_of_one_run_never_show_in_another(project, make_run, owner, ingest):
    first, second = make_run(project), make_run(project)
    ingest(first, (0, "reward/final", "geo", 0.1))
    assert owner.get(_url(second)).json()["results"] == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("step", "one", "step: A valid integer is required."),
        ("step", 1.5, "step: A valid integer is required."),
        ("step", True, "step: A valid integer is required."),
        ("step", None, "step: This field may not be null."),
        ("step", [1], "step: A valid integer is required."),
        ("step", 2**31, "step: Ensure this value is less than or equal to 2147483647."),
        ("key", None, "key: This field may not be null."),
        ("key", ["a"], "key: This value does not match the required pattern."),
        ("key", "k" * 201, "key: Ensure this field has no more than 200 characters."),
        ("value", "high", "value: A valid number is required."),
        ("value", {}, "value: A valid number is required."),
        ("value", 10**400, "value: Integer value too large to convert to float"),
        ("source", {"a": 1}, "source: Not a valid string."),
        ("source", True, "source: Not a valid string."),
        ("source", "\ud800", "source: Surrogate characters are not allowed: U+D800."),
        ("unit", "s", "unit: unknown field; allowed fields are: key, source, step, value"),
    ],
)
def test_a_wrong_type_deep_in_a_full_batch_names_the_point_and_the_field(field, value, message, run, owner):
    points = [_point(s // 4, key=f"k/{s % 4}") for s in range(10_000)]
    points[9_999] = {**points[9_999], field: value}
    # json.dumps escapes a lone surrogate, which the test client's encoder cannot write.
    response = owner.post(_url(run), data=json.dumps({"points": points}), content_type="application/json")
    body = assert_error(response, 400, code="invalid")
    assert body["message"].startswith(f"points: 9999: {message}")  # "; " joins further messages
    assert list(body["extra"]["fields"]["points"]) == ["9999"]
    assert _rows(run) == []


def test_values_the_serializer_converts_are_stored_converted(run, owner):
    # Strings of numbers, an int value and a padded source go the long way and land as the same rows.
    points = [
        _point(0, value=0.5),
        {"step": "1", "key": "reward/final", "source": " geo ", "value": "0.25"},
        {"step": 2.0, "key": "reward/final", "source": "  ", "value": 3},
        {"step": 3, "key": 7, "value": True},
    ]
    response = owner.post(_url(run), {"points": points}, format="json")
    assert response.json() == {"accepted": 4}
    assert _rows(run) == [
        (0, "reward/final", "geo", 0.5),
        (1, "reward/final", "geo", 0.25),
        (2, "reward/final", "", 3.0),
        (3, "7", "", 1.0),
    ]


def test_a_batch_with_duplicates_counts_the_rows_it_stored(run, owner):
    points = [_point(s % 10, value=s / 100) for s in range(1000)]  # 10 distinct points, 100 times each
    response = owner.post(_url(run), {"points": points}, format="json")
    assert response.json() == {"accepted": 10}
    # The last of each: step s % 10 was last sent as s = 990 + step.
    assert _rows(run) == [(step, "reward/final", "geo", (990 + step) / 100) for step in range(10)]


def test_a_ten_thousand_point_batch_replayed_overwrites_every_value(run, owner):
    points = [
        {"step": s, "key": f"reward/k{k}", "source": f"src_{s % 3}", "value": s + k / 100}
        for s in range(250)
        for k in range(40)
    ]
    assert owner.post(_url(run), {"points": points}, format="json").json() == {"accepted": 10_000}
    for p in points:
        p["value"] = None if p["step"] % 2 else -p["value"]
    assert owner.post(_url(run), {"points": points}, format="json").json() == {"accepted": 10_000}
    stored = {(s, k, src): v for s, k, src, v in _rows(run)}
    assert len(stored) == 10_000
    assert stored == {(p["step"], p["key"], p["source"]): p["value"] for p in points}


# The fast path of the ingest view against the serializer it stands in for, on random batches.
_STEPS = [0, 5, 2**31 - 1, 2**31, -1, "3", 2.0, 1.5, True, None, [1]]
_KEYS = ["reward/final", "a" * 200, "a" * 201, "bad key", "", "k\x00", " k", 5, None, "é", "NULL"]
_SOURCES = [
    "",
    "geo",
    " geo",
    "  ",
    "s" * 200,
    "s" * 201,
    "a\x00",
    "\ud800",
    5,
    ["x"],
    'q"u\\o',
    "{a,b}",
    None,
]
_VALUES = [0.5, 0, -3, 10**400, 1e308, None, "0.5", "nan", True, float("inf"), float("nan"), [1.0]]


def _random_point(rng) -> object:
    roll = rng.random()
    if roll < 0.02:
        return rng.choice(["point", 1, None, ["step"]])
    point = {
        "step": rng.choice(_STEPS) if rng.random() < 0.3 else rng.randrange(100),
        "key": rng.choice(_KEYS) if rng.random() < 0.3 else rng.choice(["reward/final", "actor/lr"]),
        "value": rng.choice(_VALUES) if rng.random() < 0.3 else rng.random(),
    }
    if rng.random() < 0.7:
        point["source"] = rng.choice(_SOURCES) if rng.random() < 0.3 else rng.choice(["geo", "chart"])
    for name in ("step", "key", "value"):
        if rng.random() < 0.02:
            del point[name]
    if rng.random() < 0.02:
        point["unit"] = "s"
    return point


@pytest.mark.parametrize("seed", range(8))
def test_the_fast_path_accepts_only_what_the_serializer_accepts_unchanged(seed):
    import random

    from control.api.metrics import MetricIngestInput, points_accepted_as_is
    from control.services.metrics import PointIn

    rng = random.Random(seed)
    fast_taken = 0
    for _ in range(400):
        # Mostly clean batches, so that both outcomes of the fast path occur.
        size = rng.choice([1, 2, 5, 20])
        clean = rng.random() < 0.5
        body = {
            "points": [_random_point(rng) if not clean else _point(rng.randrange(9)) for _ in range(size)]
        }
        fast = points_accepted_as_is(body)
        slow = MetricIngestInput(data=body)
        if fast is None:
            continue
        fast_taken += 1
        assert slow.is_valid(), (body, slow.errors)
        expected = [
            PointIn(step=p["step"], key=p["key"], source=p.get("source") or "", value=p["value"])
            for p in slow.validated_data["points"]
        ]
        assert [(*p, type(p.value)) for p in fast] == [(*p, type(p.value)) for p in expected]
    assert fast_taken > 100


@pytest.mark.parametrize(
    "body",
    [
        {"points": [_point(0)], "extra": 1},
        {"points": []},
        {"points": [_point(0)] * 10_001},
        {"points": {"0": _point(0)}},
        [_point(0)],
        {"points": [_point(0, source="geo ")]},
        {"points": [{"step": 0, "key": "k", "value": 1.0, "sauce": "geo"}]},
    ],
)
def test_the_fast_path_leaves_anything_unusual_to_the_serializer(body):
    from control.api.metrics import points_accepted_as_is

    assert points_accepted_as_is(body) is None

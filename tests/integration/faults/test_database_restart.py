"""PostgreSQL stops and comes back while a run streams its metrics: nothing is lost or doubled."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.integration.faults.conftest import count_points
from trainer.tracking import HttpSink

pytestmark = pytest.mark.slow

SOURCES = [f"src_{i}" for i in range(20)]
KEYS = [f"reward/k{i}" for i in range(30)]  # 20 x 30 = 600 points a step, a V-Triune step's size


def step_metrics(step: int) -> dict:
    return {
        (source, key): step + s / 100 + k / 10_000
        for s, source in enumerate(SOURCES)
        for k, key in enumerate(KEYS)
    }


def expected_sum(steps: range) -> float:
    return sum(sum(step_metrics(step).values()) for step in steps)


def test_a_postgres_restart_during_ingest_loses_and_doubles_nothing(stack, seeded, tmp_path):
    sink = HttpSink(
        stack.url,
        str(seeded["run"]),
        seeded["run_token"],
        spool_path=tmp_path / "spool.jsonl",
        retry_interval_s=0,
    )
    for step in range(1, 11):
        sink.log(step, step_metrics(step))
    assert sink.pending == 0

    stack.stop_postgres()
    try:
        for step in range(11, 16):
            sink.log(step, step_metrics(step))
        # The platform answered while its database was away, and the points waited in the spool.
        assert sink.pending == 5 * 600
        request = urllib.request.Request(
            stack.url + f"/api/v1/runs/{seeded['run']}/metrics/",
            method="POST",
            data=b'{"points": []}',
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {seeded['run_token']}"},
        )
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=10)
        assert refused.value.code == 503
        assert refused.value.headers["Retry-After"]
        assert json.loads(refused.value.read())["code"] == "unavailable"
        # A page says so too, in a page of its own, rather than "server error".
        with pytest.raises(urllib.error.HTTPError) as page:
            urllib.request.urlopen(stack.url + "/healthz", timeout=10)
        assert page.value.code == 503 and b"Database unavailable" in page.value.read()
    finally:
        stack.start_postgres()

    for step in range(16, 31):
        sink.log(step, step_metrics(step))
    sink.close()
    assert sink.pending == 0 and not (tmp_path / "spool.jsonl").exists()

    stored = count_points(stack, seeded["run"])
    assert stored["steps"] == list(range(1, 31))
    assert stored["count"] == 30 * 600
    assert stored["sum"] == pytest.approx(expected_sum(range(1, 31)))

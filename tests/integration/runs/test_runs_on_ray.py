"""A run created through the API trains as a Ray job on a real local head and streams its metrics.

Real parts only: PostgreSQL, Redis, a Celery worker that submits, a Ray head that runs
``python -m trainer train --spec ...``, a live server the job reports to over HTTP. The
beat's reconciliation is called in the waiting loops (it is what the beat task runs).
"""

from __future__ import annotations

import io
import tarfile
import time

import pytest

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

API = "/api/v1/"
WAIT_S = 240
# Small enough that a step takes well under a second on one core.
FAST = {
    "rollout": {"prompts_per_step": 2, "n": 2, "max_response_length": 16},
    "eval": {"every": 0, "before_training": False},
    "checkpoint": {"every": 1, "keep_last": 2},
}


def _wait(what: str, predicate, timeout: float = WAIT_S):
    """Reconcile (as the beat does) until ``predicate()`` holds; fail with ``what`` after ``timeout``."""
    from control.services.runs import runs_reconcile_active

    deadline = time.monotonic() + timeout
    while True:
        runs_reconcile_active()
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def _status(run_id: int) -> str:
    from control.models import Run

    return Run.objects.get(pk=run_id).status


def _create(client, project, sources, **extra):
    body = {
        "project": project.pk,
        "name": extra.pop("name", "tiny on ray"),
        "preset": "tiny-cpu-demo",
        "total_steps": extra.pop("total_steps", 3),
        "config": extra.pop("config", FAST),
        "sources": [{"data_source": s.pk, "weight": 1.0} for s in sources],
        **extra,
    }
    response = client.post(API + "runs/", body, format="json")
    assert response.status_code == 201, response.content[:800]
    return response.json()


def _steps(run_id: int, key: str = "actor/pg_loss") -> list[int]:
    from control.models import MetricPoint

    return sorted(
        MetricPoint.objects.filter(run_id=run_id, key=key, source="").values_list("step", flat=True)
    )


def test_a_run_trains_on_ray_and_ends_succeeded_with_logs_and_artifacts(
    platform, project, demo_sources, client_for, user
):
    from control.models import MetricPoint, Run

    owner = client_for(user)
    run = _create(owner, project, list(demo_sources.values()))
    assert (run["status"], run["attempt"]) == ("queued", 1)
    _wait("the run to end", lambda: _status(run["id"]) in Run.TERMINAL)
    body = owner.get(API + f"runs/{run['id']}/").json()
    logs = owner.get(API + f"runs/{run['id']}/logs/").json()
    assert body["status"] == "succeeded", (body["error"], logs["text"][-3000:])
    assert body["progress"]["step"] == 3 and body["progress"]["fraction"] == 1.0
    assert body["ray_submission_id"] == f"triune-run-{run['id']}-attempt-1"

    # Per-source metrics streamed in over HTTP with the run's token, every step once.
    assert _steps(run["id"]) == [1, 2, 3]
    sources = set(
        MetricPoint.objects.filter(run_id=run["id"]).exclude(source="").values_list("source", flat=True)
    )
    assert sources and sources <= set(demo_sources)
    assert MetricPoint.objects.filter(run_id=run["id"], key="reward/final").exclude(source="").exists()

    events = [
        (e["from_status"], e["to_status"])
        for e in owner.get(API + f"runs/{run['id']}/events/").json()["results"]
    ]
    assert events[:2] == [("pending", "queued"), ("queued", "submitted")]
    assert events[-1][1] == "succeeded" and ("submitted", "running") in events

    # The log outlives the job: a stored copy, complete, pageable by offset.
    assert logs["complete"] and logs["origin"] == "storage"
    assert "train: finished 3 step(s)" in logs["text"]
    tail = owner.get(API + f"runs/{run['id']}/logs/", {"offset": logs["size"] - 20}).json()
    assert tail["text"] == logs["text"][-20:] and tail["next_offset"] == logs["size"]

    artifacts = owner.get(API + f"runs/{run['id']}/artifacts/").json()
    kinds = {(a["kind"], a["step"]) for a in artifacts}
    assert ("checkpoint", 3) in kinds and ("policy", 3) in kinds and ("log", None) in kinds
    policy = next(a for a in artifacts if a["kind"] == "policy")
    assert policy["size_bytes"] > 0
    download = owner.get(policy["download"])
    assert download.status_code == 200
    archive = tarfile.open(fileobj=io.BytesIO(b"".join(download.streaming_content)), mode="r:gz")
    assert any(name.endswith("/config.json") for name in archive.getnames())

    # The job's token died with the job.
    from control.models import ApiToken

    assert not ApiToken.objects.filter(run_id=run["id"], revoked_at__isnull=True).exists()

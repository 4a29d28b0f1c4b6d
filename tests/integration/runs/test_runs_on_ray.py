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


def _wait(what: str, predicate, timeout: float = WAIT_S, *, run_id: int | None = None):
    """Reconcile (as the beat does) until ``predicate()`` holds; fail with ``what`` after ``timeout``,
    or at once when ``run_id`` ended before it held (with the run's error and log tail)."""
    from control.models import Run
    from control.selectors.run_logs import run_log_chunk
    from control.services.runs import runs_reconcile_active

    deadline = time.monotonic() + timeout
    while True:
        runs_reconcile_active()
        value = predicate()
        if value:
            return value
        run = None if run_id is None else Run.objects.get(pk=run_id)
        if run is not None and run.is_terminal:
            log = run_log_chunk(run=run).text[-3000:]
            raise AssertionError(f"run ended {run.status} before {what}: {run.error}\n{log}")
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


def _events(client, run_id: int) -> list[tuple[str, str, int]]:
    results = client.get(API + f"runs/{run_id}/events/").json()["results"]
    return [(e["from_status"], e["to_status"], e["attempt"]) for e in results]


def test_cancel_while_running_then_resume_continues_at_the_next_step(
    platform, project, demo_sources, client_for, user
):
    from control.models import Run

    owner = client_for(user)
    sources = [demo_sources["synth_counting"], demo_sources["synth_detection"]]
    run = _create(owner, project, sources, total_steps=400)
    _wait("two checkpointed steps", lambda: len(_steps(run["id"])) >= 2, run_id=run["id"])
    assert _status(run["id"]) == "running"

    cancelled = owner.post(API + f"runs/{run['id']}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["status"] in ("cancelling", "cancelled")
    _wait("the run to be cancelled", lambda: _status(run["id"]) == "cancelled")
    stopped_at = Run.objects.get(pk=run["id"]).last_step
    assert 2 <= stopped_at < 400

    resumed = owner.post(API + f"runs/{run['id']}/resume/").json()
    assert (resumed["status"], resumed["attempt"]) == ("queued", 2)
    checkpoint_step = resumed["resumed_from_step"]
    assert checkpoint_step is not None and 1 <= checkpoint_step <= stopped_at
    _wait("steps after the checkpoint", lambda: max(_steps(run["id"])) >= stopped_at + 2, run_id=run["id"])
    owner.post(API + f"runs/{run['id']}/cancel/")
    _wait("the second attempt to be cancelled", lambda: _status(run["id"]) == "cancelled")

    # Every step once, none missing: the replayed steps after the checkpoint overwrote themselves.
    steps = _steps(run["id"])
    assert steps == list(range(1, steps[-1] + 1))
    events = _events(owner, run["id"])
    assert ("running", "cancelling", 1) in events and ("cancelling", "cancelled", 1) in events
    assert ("cancelled", "queued", 2) in events and events[-1][1:] == ("cancelled", 2)
    logs = owner.get(API + f"runs/{run['id']}/logs/", {"attempt": 2}).json()
    assert "resumed from" in logs["text"] and logs["complete"]
    first = owner.get(API + f"runs/{run['id']}/logs/", {"attempt": 1}).json()
    assert "SIGTERM" in first["text"] or "stopped" in first["text"]


def test_a_target_that_does_not_answer_fails_the_run_with_the_reason(
    platform, project, demo_sources, client_for, user
):
    from control.models import ComputeTarget, Run

    closed = f"http://127.0.0.1:{_closed_port()}"
    ComputeTarget.objects.create(name="gone", address=closed)
    owner = client_for(user)
    run = _create(owner, project, [demo_sources["synth_math"]], compute_target="gone")
    _wait("the run to fail", lambda: _status(run["id"]) == "failed", timeout=60)
    error = Run.objects.get(pk=run["id"]).error
    assert "compute target 'gone'" in error and "does not answer" in error and closed in error


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_repeated_submission_makes_exactly_one_ray_job(platform, project, demo_sources, make_run):
    """A worker killed after Ray accepted the job but before the run was saved: the task runs again."""
    from ray.job_submission import JobSubmissionClient

    from control import ray_jobs
    from control.models import Run
    from control.services.launch import entrypoint, submission_id
    from control.services.run_lifecycle import run_transition
    from control.services.runs import run_submit

    run = make_run(project, sources=[demo_sources["synth_math"]], total_steps=2)
    # Queued as run_launch would, without enqueueing a task: this test plays the worker itself.
    Run.objects.filter(pk=run.pk).update(config=FAST, attempt=1)
    run = run_transition(run=run.pk, to="queued", reason="launched")
    # What the killed worker did before it died: Ray has the job, the run is still queued.
    target = ray_jobs.RayTarget.create(platform.ray.url, platform.ray.head.token())
    assert ray_jobs.submit(
        target,
        submission_id=submission_id(run),
        entrypoint=entrypoint(run, "file:///nonexistent/spec.json"),
        runtime_env={},
        metadata={},
        num_cpus=0.1,
        num_gpus=0,
    )
    again = run_submit(run_id=run.pk)
    assert again.status == "submitted"
    assert "by an earlier try" in again.events.last().reason
    client = JobSubmissionClient(platform.ray.url, headers=platform.ray.headers)
    jobs = [j for j in client.list_jobs() if j.submission_id == submission_id(run)]
    assert len(jobs) == 1
    # The redelivered task is a no-op once the run is submitted.
    assert run_submit(run_id=run.pk).status == "submitted"


def test_a_job_ray_no_longer_knows_is_lost_and_resumable(
    platform, project, demo_sources, make_run, client_for
):
    from control.models import Run
    from control.services.run_lifecycle import run_transition

    run = make_run(project, sources=[demo_sources["synth_math"]], total_steps=2)
    Run.objects.filter(pk=run.pk).update(config=FAST, attempt=1, status="queued")
    run_transition(run=run.pk, to="submitted", ray_submission_id="triune-run-unknown-attempt-1")
    _wait("the run to be lost", lambda: _status(run.pk) == "lost", timeout=30)
    lost = Run.objects.get(pk=run.pk)
    assert "no longer knows job triune-run-unknown-attempt-1" in lost.error
    resumed = client_for(project.created_by).post(API + f"runs/{run.pk}/resume/").json()
    assert (resumed["status"], resumed["attempt"], resumed["resumed_from_step"]) == ("queued", 2, None)
    reason = Run.objects.get(pk=run.pk).events.last().reason
    assert "no checkpoint yet, starting from step 0" in reason


def _trainer_pids(run_id: int) -> list[int]:
    """Processes running the trainer of ``run_id`` (found by the run's spec path on their command line)."""
    import os

    marker = f"/runs/{run_id}/spec.json"
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"python") and any(marker.encode() in a for a in argv):
            pids.append(int(entry))
    return pids


def test_a_killed_trainer_fails_the_run_and_resume_continues_from_its_checkpoint(
    platform, project, demo_sources, client_for, user
):
    import os
    import signal

    from control.models import Run

    owner = client_for(user)
    run = _create(owner, project, [demo_sources["synth_counting"]], total_steps=400)
    _wait("three steps", lambda: len(_steps(run["id"])) >= 3, run_id=run["id"])
    pids = _trainer_pids(run["id"])
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    _wait("the run to fail", lambda: _status(run["id"]) == "failed")
    failed = Run.objects.get(pk=run["id"])
    assert "the job failed" in failed.error and failed.finished_at is not None
    killed_at = failed.last_step

    resumed = owner.post(API + f"runs/{run['id']}/resume/").json()
    assert resumed["attempt"] == 2 and 1 <= resumed["resumed_from_step"] <= killed_at
    _wait("steps after the kill", lambda: max(_steps(run["id"])) >= killed_at + 2, run_id=run["id"])
    assert _status(run["id"]) == "running"
    owner.post(API + f"runs/{run['id']}/cancel/")
    _wait("the second attempt to be cancelled", lambda: _status(run["id"]) == "cancelled")
    steps = _steps(run["id"])
    assert steps == list(range(1, steps[-1] + 1))
    assert not _trainer_pids(run["id"])


def test_a_restarted_ray_head_loses_the_run_and_resume_continues_on_the_new_head(
    platform, project, demo_sources, client_for, user, monkeypatch
):
    import os
    import signal

    from control.models import ComputeTarget, Run
    from tests.integration.runs.conftest import RayHead

    owner = client_for(user)
    head = RayHead(num_cpus=1)
    run = None
    try:
        monkeypatch.setenv("FLAKY_RAY_TOKEN", head.head.token())
        ComputeTarget.objects.create(name="flaky", address=head.url, auth_token_env="FLAKY_RAY_TOKEN")
        run = _create(owner, project, [demo_sources["synth_ocr"]], total_steps=400, compute_target="flaky")
        _wait("three steps", lambda: len(_steps(run["id"])) >= 3, run_id=run["id"])
        # The head dies with everything on its node, and comes back empty on the same address.
        head.kill()
        assert not _trainer_pids(run["id"])
        head = head.restart()
        _wait("the run to be lost", lambda: _status(run["id"]) == "lost")
        lost = Run.objects.get(pk=run["id"])
        assert "no longer knows job" in lost.error
        before = lost.last_step

        resumed = owner.post(API + f"runs/{run['id']}/resume/").json()
        assert resumed["attempt"] == 2 and 1 <= resumed["resumed_from_step"] <= before
        _wait("steps on the new head", lambda: max(_steps(run["id"])) >= before + 2, run_id=run["id"])
        owner.post(API + f"runs/{run['id']}/cancel/")
        _wait("the run to be cancelled", lambda: _status(run["id"]) == "cancelled")
        steps = _steps(run["id"])
        assert steps == list(range(1, steps[-1] + 1))
    finally:
        if run is not None:
            for pid in _trainer_pids(run["id"]):
                os.kill(pid, signal.SIGKILL)
        head.stop()

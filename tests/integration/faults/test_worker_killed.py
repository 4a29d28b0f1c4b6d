"""The Celery worker is killed in the middle of a submission, after Ray accepted the job and before
the run was saved as submitted: the run is submitted again by the reconciler, Ray holds exactly one
job for it, and that job's metrics are accepted (its token is the one the retry stores)."""

from __future__ import annotations

import time

import pytest

from tests.integration.faults.client import call, call_json, multipart
from trainer.data.synth import generate_dataset

pytestmark = pytest.mark.slow

FAST = {
    "rollout": {"prompts_per_step": 2, "n": 2, "max_response_length": 16},
    "eval": {"every": 0, "before_training": False},
    "checkpoint": {"every": 0},
}


def wait_for(what: str, predicate, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_a_worker_killed_during_submission_leaves_one_ray_job_that_reports(stack, seeded, ray_head, tmp_path):
    import psycopg
    from ray.job_submission import JobSubmissionClient

    stack.extra_env.update(
        TRIUNE_RAY_JOBS_URL=ray_head.url,
        RAY_AUTH_TOKEN_PATH=str(ray_head.token_path),
        TRIUNE_JOB_PLATFORM_URL=stack.url,
        TRIUNE_RESUBMIT_AFTER_S="1",
    )
    stack.stop_web()
    stack.start_web()
    token = seeded["user_token"]
    generate_dataset(str(tmp_path / "synth"), tasks=["counting"], per_source=8, image_size=56)
    body, content_type = multipart(
        {"project": seeded["project"], "name": "counting"}, sorted((tmp_path / "synth").glob("*.parquet"))
    )
    status, dataset = call(stack, "POST", "/api/v1/datasets/", token, body, {"Content-Type": content_type})
    assert status == 201, dataset
    status, sources = call(stack, "GET", f"/api/v1/data-sources/?project={seeded['project']}", token)
    source = next(s for s in sources["results"] if s["name"] == "synth_counting")
    run_body = {
        "project": seeded["project"],
        "name": "killed worker",
        "preset": "tiny-cpu-demo",
        "total_steps": 400,
        "config": FAST,
        "sources": [{"data_source": source["id"], "weight": 1.0}],
        "launch": False,
    }
    status, run = call_json(stack, "POST", "/api/v1/runs/", token, run_body)
    assert status == 201, run
    # Queued, its submit task waiting in the broker for a worker.
    status, run = call_json(stack, "POST", f"/api/v1/runs/{run['id']}/launch/", token, {})
    assert (status, run["status"]) == (200, "queued"), run
    job_id = f"triune-run-{run['id']}-attempt-1"
    ray = JobSubmissionClient(ray_head.url, headers=ray_head.headers)

    def run_status() -> str:
        return call(stack, "GET", f"/api/v1/runs/{run['id']}/", token)[1]["status"]

    def ray_jobs() -> list:
        return [j for j in ray.list_jobs() if j.submission_id == job_id]

    # The run events table locked: the worker submits to Ray, then waits to save the run as submitted.
    lock = psycopg.connect(stack.database_url.replace("postgres://", "postgresql://", 1))
    try:
        with lock.transaction():
            lock.execute("LOCK TABLE control_runevent IN EXCLUSIVE MODE")
            worker = stack.start_worker()
            wait_for("Ray to accept the job", ray_jobs)
            worker.kill()
            worker.wait(30)
    finally:
        lock.close()
    assert run_status() == "queued"
    try:
        stack.start_worker()
        # The beat's reconciler sees the run queued too long and sends its submit task again.
        wait_for(
            "the run to be submitted again",
            lambda: (
                stack.django(
                    "from control.services.runs import runs_reconcile_active\nruns_reconcile_active()"
                )
                is None
                and run_status() != "queued"
            ),
        )
        events = call(stack, "GET", f"/api/v1/runs/{run['id']}/events/", token)[1]["results"]
        assert "by an earlier try" in events[-1]["reason"] or any(
            "by an earlier try" in e["reason"] for e in events
        )
        # The job Ray started at the first try reports with the token the retry stored.
        wait_for(
            "the job's first metrics",
            lambda: call(stack, "GET", f"/api/v1/runs/{run['id']}/", token)[1]["last_step"] >= 1,
        )
        assert len(ray_jobs()) == 1
    finally:
        ray.stop_job(job_id)
        wait_for("the job to stop", lambda: ray.get_job_status(job_id).is_terminal(), timeout=120)

"""The Ray Jobs API of a compute target: submit, status, logs, stop.

A thin adapter over Ray's ``JobSubmissionClient``. Its requests carry no time limit, so every
client is created only after the address answered a short ``GET /api/version``: a target whose
address does not answer raises :class:`RayUnavailable` within seconds instead of hanging.
"""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

PROBE_TIMEOUT_S = 5.0
# How long a submission waits for the job agent of a head that has just started.
AGENT_WAIT_S = 60.0

# Ray's job states (ray.job_submission.JobStatus values).
PENDING, RUNNING, STOPPED, SUCCEEDED, FAILED = "PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"


class RayUnavailable(RuntimeError):
    """The target's Jobs API cannot be reached or refused our credentials."""


@dataclass(frozen=True)
class JobState:
    status: str
    message: str = ""
    exit_code: int | None = None


@dataclass(frozen=True)
class RayTarget:
    """Where a Jobs API lives and how to authenticate to it."""

    address: str
    token: str | None = None
    headers: dict = field(default_factory=dict)

    @classmethod
    def create(cls, address: str, token: str | None = None) -> RayTarget:
        address = address.strip().rstrip("/")
        if address and "://" not in address:
            address = f"http://{address}"
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return cls(address=address, token=token, headers=headers)


def read_token(*, env_var: str = "", token_path: str = "") -> str | None:
    """A Ray auth token from an environment variable or a token file; None when neither holds one."""
    if env_var and os.environ.get(env_var):
        return os.environ[env_var].strip()
    if token_path:
        try:
            return Path(token_path).read_text().strip() or None
        except OSError:
            return None
    return None


def probe(target: RayTarget) -> str:
    """The Ray version the target runs; :class:`RayUnavailable` when it does not answer in time."""
    if not target.address.startswith(("http://", "https://")):
        raise RayUnavailable(f"{target.address!r} is not an http(s) Ray Jobs API address")
    request = urllib.request.Request(f"{target.address}/api/version", headers=target.headers)
    try:
        with urllib.request.urlopen(request, timeout=PROBE_TIMEOUT_S) as response:  # noqa: S310
            return json.loads(response.read(10_000)).get("ray_version", "?")
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise RayUnavailable(
                f"the Ray cluster at {target.address} refused our credentials (HTTP {exc.code}); "
                "set the compute target's auth token"
            ) from None
        raise RayUnavailable(f"the Ray Jobs API at {target.address} answered HTTP {exc.code}") from None
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RayUnavailable(f"the Ray Jobs API at {target.address} does not answer: {reason}") from None


def _client(target: RayTarget):
    probe(target)
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(target.address, headers=dict(target.headers))
    except (ConnectionError, RuntimeError) as exc:
        raise RayUnavailable(f"cannot use the Ray Jobs API at {target.address}: {exc}") from None


def submit(
    target: RayTarget,
    *,
    submission_id: str,
    entrypoint: str,
    runtime_env: dict,
    metadata: dict[str, str],
    num_cpus: float,
    num_gpus: float,
) -> bool:
    """Submit a job; False when a job of that id exists already (a retried submission)."""
    client = _client(target)
    deadline = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(
                entrypoint=entrypoint,
                submission_id=submission_id,
                runtime_env=runtime_env,
                metadata=metadata,
                entrypoint_num_cpus=num_cpus,
                entrypoint_num_gpus=num_gpus,
            )
        except RuntimeError as exc:
            if "already exists" in str(exc):
                return False
            # A head that has just started answers before its job agent is ready.
            if "No available agent" in str(exc) and time.monotonic() < deadline:
                time.sleep(1.0)
                continue
            raise
        return True


def status(target: RayTarget, submission_id: str) -> JobState | None:
    """The job's state, or None when the cluster does not know the job."""
    client = _client(target)
    try:
        info = client.get_job_info(submission_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            return None
        raise RayUnavailable(f"cannot read job {submission_id}: {exc}") from None
    return JobState(
        status=str(getattr(info.status, "value", info.status)),
        message=info.message or "",
        exit_code=getattr(info, "driver_exit_code", None),
    )


def logs(target: RayTarget, submission_id: str) -> str:
    """The job's whole log so far."""
    client = _client(target)
    try:
        return client.get_job_logs(submission_id)
    except RuntimeError as exc:
        raise RayUnavailable(f"cannot read the log of job {submission_id}: {exc}") from None


def stop(target: RayTarget, submission_id: str) -> bool:
    """Ask Ray to stop the job (SIGTERM, then SIGKILL); False when it was not running."""
    client = _client(target)
    try:
        return bool(client.stop_job(submission_id))
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            return False
        raise RayUnavailable(f"cannot stop job {submission_id}: {exc}") from None

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from control import ray_jobs
from control.errors import Conflict, DomainError
from control.models import ApiToken, DataSource, Project, Run, RunSource
from control.ray_jobs import RayUnavailable
from control.services import launch
from control.services.alerts import alerts_check_stalls
from control.services.broadcast import enqueue_task
from control.services.run_lifecycle import run_transition, run_transition_quietly
from control.services.run_outputs import latest_checkpoint_step, run_artifacts_sync, run_log_store
from control.services.tokens import run_attempt_token

logger = logging.getLogger(__name__)
S = Run.Status

PRESETS = ("vtriune-7b", "vtriune-32b", "tiny-cpu-demo")


@dataclass(frozen=True)
class SourceWeight:
    source: DataSource
    weight: float


@transaction.atomic
def run_create(
    *,
    project: Project,
    user: AbstractBaseUser,
    name: str,
    sources: Sequence[SourceWeight],
    preset: str = "tiny-cpu-demo",
    config: dict | None = None,
    compute_target: str = "local",
    total_steps: int = 0,
    description: str = "",
    num_cpus: float = 1.0,
    num_gpus: float = 0.0,
    cloned_from: Run | None = None,
) -> Run:
    """Record a pending run with its source mixture; :func:`run_launch` queues it."""
    if preset not in PRESETS:
        raise DomainError(
            f"preset must be one of {', '.join(PRESETS)}, got {preset!r}", fields={"preset": ["unknown"]}
        )
    if not sources:
        raise DomainError("a run needs at least one data source", fields={"sources": ["empty"]})
    seen: set[int] = set()
    for item in sources:
        if item.source.project_id != project.pk:
            raise DomainError(
                f"data source {item.source.pk} belongs to another project", fields={"sources": ["foreign"]}
            )
        if item.source.pk in seen:
            raise DomainError(f"data source {item.source.pk} is listed twice", fields={"sources": ["dup"]})
        if not item.weight > 0:
            raise DomainError(
                f"weight of data source {item.source.pk} must be > 0, got {item.weight}",
                fields={"sources": ["weight"]},
            )
        seen.add(item.source.pk)
    run = Run.objects.create(
        project=project,
        name=name,
        description=description,
        created_by=user,
        preset=preset,
        config=config or {},
        compute_target=compute_target,
        total_steps=total_steps,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        cloned_from=cloned_from,
    )
    RunSource.objects.bulk_create(
        [RunSource(run=run, data_source=item.source, weight=item.weight) for item in sources]
    )
    return run


@transaction.atomic
def run_start(*, launch: bool = True, **fields) -> Run:
    """Create a run (the fields of :func:`run_create`) and launch it, both or neither; with
    ``launch`` false the run stays pending (a draft)."""
    run = run_create(**fields)
    return run_launch(run=run) if launch else run


@transaction.atomic
def run_launch(*, run: Run) -> Run:
    """Check everything a launch needs, queue the run, and submit it once the transaction commits."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status != S.PENDING:
        raise Conflict(f"run {run.pk} is {run.status}; only a pending run can be launched")
    launch.run_launch_check(run)
    run = run_transition(run=run, to=S.QUEUED, reason="launched", attempt=1, error="")
    transaction.on_commit(lambda: enqueue_task(launch.SUBMIT_TASK, run.pk))
    return run


def _fail(run: Run, reason: str) -> Run | None:
    return run_transition_quietly(run=run, to=S.FAILED, reason=reason, error=reason)


@transaction.atomic
def run_submit(*, run_id: int) -> Run | None:
    """Submit the queued run's current attempt as a Ray job; safe to run twice.

    The row stays locked while Ray is asked, so a cancel waits for the answer. A job of the
    same submission id that exists already means a previous try submitted it.
    """
    run = Run.objects.select_for_update().filter(pk=run_id).first()
    if run is None or run.status != S.QUEUED:
        return run
    try:
        config, target = launch.run_launch_check(run)
    except DomainError as exc:
        return _fail(run, f"launch check failed: {exc.message}")
    spec_uri = launch.run_spec_write(run, config)
    _, token = run_attempt_token(run=run)
    job_id = launch.submission_id(run)
    try:
        created = ray_jobs.submit(
            launch.ray_target(target),
            submission_id=job_id,
            entrypoint=launch.entrypoint(run, spec_uri),
            runtime_env=launch.job_runtime_env(target, token=token),
            metadata={
                "triune_project": str(run.project_id),
                "triune_run": str(run.pk),
                "triune_attempt": str(run.attempt),
                "run_name": run.name[:100],
            },
            num_cpus=run.num_cpus,
            num_gpus=run.num_gpus,
        )
    except RayUnavailable as exc:
        _revoke_run_tokens(run)
        return _fail(run, f"compute target {target.name!r}: {exc}")
    except (RuntimeError, ValueError, TypeError) as exc:
        _revoke_run_tokens(run)
        return _fail(run, f"Ray refused job {job_id}: {exc}")
    # A job of this id existing already was submitted by an earlier try of this attempt, with the same
    # token (run_attempt_token), which this transaction now stores if that try's was rolled back.
    return run_transition(
        run=run,
        to=S.SUBMITTED,
        reason=f"submitted as Ray job {job_id}" + ("" if created else " (by an earlier try)"),
        ray_submission_id=job_id,
        spec_uri=spec_uri,
    )


def _revoke_run_tokens(run: Run) -> None:
    ApiToken.objects.filter(run=run, revoked_at__isnull=True).update(revoked_at=timezone.now())


def run_mark_running(*, run: Run) -> None:
    """The trainer's first metrics of an attempt: a submitted run is running."""
    if run.status == S.SUBMITTED:
        run_transition_quietly(run=run, to=S.RUNNING, reason="first metrics arrived")


@transaction.atomic
def run_cancel(*, run: Run) -> Run:
    """Stop a run: at once when it never reached Ray, else ask Ray to stop the job (SIGTERM)."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.is_terminal:
        raise Conflict(f"run {run.pk} already ended ({run.status}); nothing to cancel")
    if run.status == S.CANCELLING:
        return run
    if run.status in (S.PENDING, S.QUEUED):
        return run_transition(run=run, to=S.CANCELLED, reason="cancelled before submission")
    run = run_transition(run=run, to=S.CANCELLING, reason="cancel asked")
    transaction.on_commit(lambda: enqueue_task(launch.STOP_TASK, run.pk))
    return run


def run_stop(*, run_id: int) -> bool:
    """Ask Ray to stop the run's job; the reconciler records the outcome."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or not run.ray_submission_id:
        return False
    target = launch.compute_target_get(run.compute_target)
    try:
        return ray_jobs.stop(launch.ray_target(target), run.ray_submission_id)
    except RayUnavailable as exc:
        logger.warning("run %s: cannot stop its job: %s", run.pk, exc)
        return False


@transaction.atomic
def run_resume(*, run: Run) -> Run:
    """A new attempt of an ended run, from its newest complete checkpoint (or step 0 when none)."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status not in (S.FAILED, S.CANCELLED, S.LOST):
        raise Conflict(f"run {run.pk} is {run.status}; only a failed, cancelled or lost run can be resumed")
    if run.attempt == 0:
        raise Conflict(f"run {run.pk} was never launched; launch it instead")
    launch.run_launch_check(run)
    step = latest_checkpoint_step(run)
    if step is None:
        reason = f"resumed as attempt {run.attempt + 1}: no checkpoint yet, starting from step 0"
        resumed_from = None
    else:
        reason = f"resumed as attempt {run.attempt + 1} from the checkpoint of step {step}"
        resumed_from = step
    run = run_transition(
        run=run,
        to=S.QUEUED,
        reason=reason,
        attempt=run.attempt + 1,
        resumed_from_step=resumed_from,
        error="",
        ray_submission_id="",
    )
    transaction.on_commit(lambda: enqueue_task(launch.SUBMIT_TASK, run.pk))
    return run


@transaction.atomic
def run_clone(*, run: Run, user: AbstractBaseUser, name: str | None = None) -> Run:
    """A new pending run with the sources, preset and config of ``run``, editable before launch."""
    sources = [
        SourceWeight(item.data_source, item.weight) for item in run.run_sources.select_related("data_source")
    ]
    return run_create(
        project=run.project,
        user=user,
        name=name or f"{run.name} (clone)"[:200],
        description=run.description,
        sources=sources,
        preset=run.preset,
        config=run.config,
        compute_target=run.compute_target,
        total_steps=run.total_steps,
        num_cpus=run.num_cpus,
        num_gpus=run.num_gpus,
        cloned_from=run,
    )


@transaction.atomic
def run_update(*, run: Run, sources: Sequence[SourceWeight] | None = None, **fields: object) -> Run:
    """Edit a pending run (a clone before launch): its fields and, when given, its whole mixture."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.status != S.PENDING:
        raise Conflict(f"run {run.pk} is {run.status}; only a pending run can be edited")
    for name, value in fields.items():
        setattr(run, name, value)
    if fields:
        run.save(update_fields=list(fields))
    if sources is not None:
        if not sources:
            raise DomainError("a run needs at least one data source", fields={"sources": ["empty"]})
        seen: set[int] = set()
        for item in sources:
            if item.source.project_id != run.project_id or item.source.pk in seen or not item.weight > 0:
                raise DomainError(
                    f"data source {item.source.pk}: listed twice, of another project, or weight <= 0",
                    fields={"sources": ["invalid"]},
                )
            seen.add(item.source.pk)
        run.run_sources.all().delete()
        RunSource.objects.bulk_create(
            [RunSource(run=run, data_source=item.source, weight=item.weight) for item in sources]
        )
    return run


RAY_TO_STATUS = {
    ray_jobs.RUNNING: S.RUNNING,
    ray_jobs.SUCCEEDED: S.SUCCEEDED,
    ray_jobs.FAILED: S.FAILED,
    ray_jobs.STOPPED: S.CANCELLED,
}


def run_reconcile(*, run_id: int) -> Run | None:
    """Bring one active run's state in line with its Ray job; keep what it leaves when it ends."""
    run = Run.objects.filter(pk=run_id).first()
    if run is None or run.status not in Run.ACTIVE or not run.ray_submission_id:
        return run
    target = launch.compute_target_get(run.compute_target)
    ray = launch.ray_target(target)
    try:
        state = ray_jobs.status(ray, run.ray_submission_id)
    except RayUnavailable as exc:
        logger.info("run %s: Ray unreachable while reconciling: %s", run.pk, exc)
        return run
    if state is None:
        return _end(
            run, ray, S.LOST, f"Ray no longer knows job {run.ray_submission_id} (the head restarted?)"
        )
    if state.status == ray_jobs.PENDING:
        return run
    target_status = RAY_TO_STATUS.get(state.status)
    if target_status is None:
        return run
    if target_status == S.RUNNING:
        return run_transition_quietly(run=run, to=S.RUNNING, reason="Ray reports the job running") or run
    if target_status == S.FAILED:
        reason = f"the job failed (exit code {state.exit_code}): {state.message}".strip()
    elif target_status == S.CANCELLED:
        reason = "cancelled: the job was stopped" + (
            "" if run.status == S.CANCELLING else " outside the platform"
        )
    else:
        reason = "the job finished"
    return _end(run, ray, target_status, reason)


def _end(run: Run, ray, status: str, reason: str) -> Run | None:
    """Keep the attempt's log and artifacts, revoke its tokens, then record the end."""
    try:
        text = ray_jobs.logs(ray, run.ray_submission_id)
    except RayUnavailable:
        text = None
    if text is not None:
        run_log_store(run=run, attempt=run.attempt, text=text)
    try:
        run_artifacts_sync(run=run)
    except OSError as exc:
        logger.warning("run %s: cannot list its artifacts: %s", run.pk, exc)
    _revoke_run_tokens(run)
    error = reason if status in (S.FAILED, S.LOST) else ""
    return run_transition_quietly(run=run, to=status, reason=reason, error=error)


def runs_reconcile_active() -> dict[str, int]:
    """Reconcile every active run, then look for stalled ones (stall alert rules); returns how many
    runs ended up in each state."""
    counts: dict[str, int] = {}
    for run_id in Run.objects.filter(status__in=Run.ACTIVE).values_list("pk", flat=True):
        try:
            run = run_reconcile(run_id=run_id)
        except DomainError as exc:
            logger.warning("run %s: %s", run_id, exc.message)
            continue
        if run is not None:
            counts[run.status] = counts.get(run.status, 0) + 1
    runs_resubmit_stalled()
    alerts_check_stalls()
    return counts


def runs_resubmit_stalled() -> list[int]:
    """Send the submit task again for runs queued longer than ``TRIUNE_RESUBMIT_AFTER_S`` (once per
    that period); returns the ids it was sent for.

    A queued run waits for its submit task. The task is lost when the broker was down as it was
    sent, and held for the broker's visibility timeout (an hour for Redis) when the worker running
    it was killed. Submitting is idempotent (one Ray submission id per attempt), so sending the
    task again never makes a second job.
    """
    cutoff = timezone.now() - timedelta(seconds=settings.TRIUNE_RESUBMIT_AFTER_S)
    stalled = Run.objects.filter(status=S.QUEUED, queued_at__lte=cutoff).order_by("pk")
    resent = []
    for run_id, queued_at in stalled.values_list("pk", "queued_at"):
        # At most once per period and run, however often the reconciler runs (cache.add is atomic).
        try:
            key = f"triune:resubmit:{run_id}:{queued_at.timestamp()}"  # one a queueing
            first = cache.add(key, 1, timeout=max(1, settings.TRIUNE_RESUBMIT_AFTER_S))
        except Exception:  # noqa: BLE001 - Redis away: the task could not be sent either; next round
            logger.warning("run %s: cannot reach the cache to resubmit it; trying next round", run_id)
            break
        if not first:
            continue
        resent.append(run_id)
        logger.warning(
            "run %s: queued for over %s s; sending its submit task again",
            run_id,
            settings.TRIUNE_RESUBMIT_AFTER_S,
        )
        enqueue_task(launch.SUBMIT_TASK, run_id)
    return resent

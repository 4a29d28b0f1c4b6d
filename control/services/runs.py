from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from control.errors import Conflict, DomainError
from control.models import DataSource, Project, Run, RunSource

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
) -> Run:
    """Record a run with its source mixture; submission to the cluster happens after commit."""
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
    )
    RunSource.objects.bulk_create(
        [RunSource(run=run, data_source=item.source, weight=item.weight) for item in sources]
    )
    return run


@transaction.atomic
def run_cancel(*, run: Run) -> Run:
    """Ask a run to stop. A run that never reached the cluster is cancelled at once."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if run.is_terminal:
        raise Conflict(f"run {run.pk} already ended ({run.status}); nothing to cancel")
    if run.status == Run.Status.PENDING:
        run.status = Run.Status.CANCELLED
        run.finished_at = timezone.now()
    else:
        run.status = Run.Status.CANCELLING
    run.save(update_fields=["status", "finished_at"])
    return run

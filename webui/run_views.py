"""The run page: what its header shows on first paint, and the page's settings for its scripts.

Everything else the page reads through the API (series, logs, artifacts, alerts) and the run's
websocket, as any other client would.
"""

from __future__ import annotations

from django.http import HttpRequest

from control.models import Run, RunSource
from control.selectors.runs import run_progress
from webui.access import can_write

COMPARE_RUNS = 50  # other runs of the project offered as overlays, newest first


def run_page_context(request: HttpRequest, run: Run) -> dict:
    """The template context of ``run``'s page for the signed-in user (a member of its project)."""
    writable = can_write(request, run.project)
    progress = run_progress(run=run)
    sources = sorted(
        RunSource.objects.filter(run=run).values_list("data_source__name", "data_source__task_type"),
    )
    # The user may see the whole project: the page itself was resolved through its membership.
    others = Run.objects.filter(project_id=run.project_id).exclude(pk=run.pk).values("id", "name", "status")
    others = others.order_by("-created_at", "-id")[:COMPARE_RUNS]
    config = {
        "id": run.pk,
        "project": run.project_id,
        "status": run.status,
        "attempt": run.attempt,
        "resumed_from_step": run.resumed_from_step,
        "last_step": run.last_step,
        "total_steps": run.total_steps,
        "error": run.error,
        "progress": progress,
        "can_write": writable,
        # The page gives each source a colour by its place in this list (sorted by name).
        "sources": [{"name": name, "task_type": task} for name, task in sources],
        "compare": list(others),
    }
    return {
        "run": run,
        "project": run.project,
        "can_write": writable,
        "progress": progress,
        "page_config": config,
    }

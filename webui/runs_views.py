"""The runs of a project: state, progress with ETA, a sparkline of the final reward, filters."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from control.models import Run, Tag
from control.selectors.runs import run_progress, runs_list, runs_recent_values
from webui.access import project_or_404

SPARK_WIDTH, SPARK_HEIGHT = 120, 24


def sparkline_points(values: list[float], width: int = SPARK_WIDTH, height: int = SPARK_HEIGHT) -> str:
    """An SVG polyline's ``points`` for ``values`` scaled into a width × height box (y grows down).

    >>> sparkline_points([0.0, 1.0], width=10, height=4)
    '0.0,4.0 10.0,0.0'
    """
    if not values:
        return ""
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    step = width / max(len(values) - 1, 1)
    return " ".join(
        f"{round(i * step, 1)},{round(height - (v - low) / span * height, 1)}" for i, v in enumerate(values)
    )


@login_required
def runs_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    status = request.GET.get("status") or ""
    if status not in Run.Status.values:
        status = ""
    tag = (request.GET.get("tag") or "")[:64]
    runs = runs_list(user=request.user, project_id=project.pk, status=status or None)
    if tag:
        runs = runs.filter(run_sources__data_source__tags__name=tag).distinct()
    runs = runs.select_related("created_by")
    page = Paginator(runs, 50).get_page(request.GET.get("page"))
    recent = runs_recent_values(run_ids=[run.pk for run in page])
    rows = [
        {
            "run": run,
            "progress": run_progress(run=run),
            "spark": sparkline_points(recent.get(run.pk, [])),
            "last_reward": (recent.get(run.pk) or [None])[-1],
            "source_count": len(run.run_sources.all()),
        }
        for run in page
    ]
    context = {
        "project": project,
        "rows": rows,
        "page": page,
        "status": status,
        "tag": tag,
        "statuses": Run.Status.values,
        "tags": Tag.objects.filter(project=project).values_list("name", flat=True),
        "spark_width": SPARK_WIDTH,
        "spark_height": SPARK_HEIGHT,
    }
    return render(request, "webui/runs.html", context)


@login_required
def runs_compare(request: HttpRequest, project_id: int) -> HttpResponse:
    """The first selected run's page with the others overlaid (``?overlay=2,3``)."""
    from django.shortcuts import redirect

    project = project_or_404(request, project_id)
    wanted = [int(v) for v in request.GET.getlist("run") if v.isdigit()][:10]
    found = list(
        runs_list(user=request.user, project_id=project.pk).filter(pk__in=wanted).values_list("pk", flat=True)
    )
    chosen = [pk for pk in wanted if pk in found]
    if not chosen:
        from django.contrib import messages

        messages.error(request, "Select at least one run of this project to compare.")
        return redirect("runs", project_id=project.pk)
    url = f"/runs/{chosen[0]}/"
    if len(chosen) > 1:
        url += "?overlay=" + ",".join(str(pk) for pk in chosen[1:])
    return redirect(url)

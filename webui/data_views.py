"""Pages of a project's data: datasets and versions, the upload page, the source list and one source.

Reads go through control.selectors, writes through control.services; a project
or source the user is not a member of answers 404, exactly like a missing one.
The upload page itself only renders the form: the browser streams the files
through the REST API (static/webui/upload.js).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from control.errors import DomainError, NotFound
from control.models import DataSource
from control.selectors.data import data_sources_list, datasets_list, tags_list
from control.selectors.projects import object_get_for_user
from control.services.data import data_source_update
from control.services.datasets import POLICIES
from webui.access import can_write, project_or_404
from webui.forms import SourceEditForm, SourceFilterForm
from webui.source_stats import stats_charts

# The browser sends files in chunks of this size (below TRIUNE_MAX_CHUNK_BYTES, 16 MiB by default).
UPLOAD_CHUNK_BYTES = 8 * 1024 * 1024
MAX_LISTED_SOURCES = 500


def _source_or_404(request: HttpRequest, source_id: int) -> DataSource:
    try:
        return object_get_for_user(
            DataSource.objects.select_related("project", "dataset_version__dataset").prefetch_related("tags"),
            user=request.user,
            pk=source_id,
            label="data source",
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc


@require_GET
@login_required
def datasets_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    datasets = datasets_list(user=request.user, project_id=project.pk).prefetch_related(
        "versions__sources__tags"
    )
    return render(
        request,
        "webui/datasets.html",
        {"project": project, "datasets": datasets, "can_write": can_write(request, project)},
    )


@require_GET
@login_required
def dataset_upload_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    context = {
        "project": project,
        "can_write": can_write(request, project),
        "chunk_bytes": min(UPLOAD_CHUNK_BYTES, settings.TRIUNE_MAX_CHUNK_BYTES),
        "max_bytes": settings.TRIUNE_MAX_UPLOAD_BYTES,
        "policies": POLICIES,
    }
    return render(request, "webui/dataset_upload.html", context)


@require_GET
@login_required
def sources_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    form = SourceFilterForm(request.GET)
    form.is_valid()  # a field that does not validate is left out of cleaned_data, hence not applied
    filters = form.cleaned_data
    sources = data_sources_list(
        user=request.user,
        project_id=project.pk,
        tag=filters.get("tag") or None,
        task_type=filters.get("task_type") or None,
        search=filters.get("search") or None,
    ).select_related("dataset_version__dataset")
    listed = list(sources[: MAX_LISTED_SOURCES + 1])
    context = {
        "project": project,
        "form": form,
        "sources": listed[:MAX_LISTED_SOURCES],
        "truncated": len(listed) > MAX_LISTED_SOURCES,
        "max_listed": MAX_LISTED_SOURCES,
        "tags": tags_list(user=request.user, project_id=project.pk),
        "filtered": any(filters.get(k) for k in ("tag", "task_type", "search")),
    }
    return render(request, "webui/sources.html", context)


def _edit_form_for(source: DataSource) -> SourceEditForm:
    return SourceEditForm(
        initial={
            "description": source.description,
            "task_type": source.task_type,
            "tags": ", ".join(t.name for t in source.tags.all()),
        }
    )


@require_GET
@login_required
def source_page(request: HttpRequest, source_id: int) -> HttpResponse:
    source = _source_or_404(request, source_id)
    context = {
        "project": source.project,
        "source": source,
        "version": source.dataset_version,
        "can_write": can_write(request, source.project),
        "form": _edit_form_for(source),
        "charts": stats_charts(source.stats),
    }
    return render(request, "webui/source.html", context)


@require_POST
@login_required
def source_edit(request: HttpRequest, source_id: int) -> HttpResponse:
    source = _source_or_404(request, source_id)
    if not can_write(request, source.project):
        raise PermissionDenied(
            f"you are a viewer of project {source.project_id}; ask an owner for the member role"
        )
    form = SourceEditForm(request.POST)
    if not form.is_valid():
        for field, errors in form.errors.items():
            for error in errors:
                messages.error(request, f"{field}: {error}")
        return redirect("source", source_id=source.pk)
    try:
        data_source_update(
            source=source,
            description=form.cleaned_data["description"],
            task_type=form.cleaned_data["task_type"],
            tag_names=form.cleaned_data["tags"],
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Saved {source.name}.")
    return redirect("source", source_id=source.pk)

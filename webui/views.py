from __future__ import annotations

import sys

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template import loader
from django.urls import Resolver404

from control.errors import (
    DATABASE_RETRY_AFTER_S,
    DomainError,
    NotFound,
    database_unavailable,
    database_unavailable_body,
)
from control.models import Run
from control.selectors.data import data_sources_list
from control.selectors.projects import object_get_for_user, project_get_for_user, projects_for_user
from control.selectors.runs import runs_list
from control.services.projects import project_create
from webui.run_views import run_page_context


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


@login_required
def home(request: HttpRequest) -> HttpResponse:
    projects = projects_for_user(user=request.user)
    return render(request, "webui/home.html", {"projects": projects})


@login_required
def project_new(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        name = request.POST.get("name", "")[:100]
        try:
            project = project_create(
                user=request.user, name=name, description=request.POST.get("description", "")[:5000]
            )
        except DomainError as exc:
            messages.error(request, exc.message)
            return redirect("home")
        messages.success(request, f"Project {project.name} created.")
        return redirect("project", project_id=project.pk)
    return redirect("home")


@login_required
def project_detail(request: HttpRequest, project_id: int) -> HttpResponse:
    try:
        project = project_get_for_user(user=request.user, project_id=project_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc
    context = {
        "project": project,
        "runs": runs_list(user=request.user, project_id=project.pk)[:100],
        "sources": data_sources_list(user=request.user, project_id=project.pk)[:200],
    }
    return render(request, "webui/project.html", context)


@login_required
def run_detail(request: HttpRequest, run_id: int) -> HttpResponse:
    try:
        run = object_get_for_user(
            Run.objects.select_related("project"), user=request.user, pk=run_id, label="run"
        )
    except NotFound as exc:
        raise Http404(exc.message) from exc
    return render(request, "webui/run.html", run_page_context(request, run))


def _not_found_message(exception) -> str:
    """The message a view gave its 404, never the URL resolver's (its list of patterns names modules)."""
    if isinstance(exception, Resolver404) or not isinstance(exception, Http404):
        return ""
    if len(exception.args) == 1 and isinstance(exception.args[0], str):
        return exception.args[0][:300]
    return ""


def not_found(request: HttpRequest, exception=None) -> HttpResponse:
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"message": f"no API endpoint at {request.path[:200]}", "code": "not_found", "extra": {}},
            status=404,
        )
    return render(request, "webui/404.html", {"message": _not_found_message(exception)}, status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    if database_unavailable(sys.exc_info()[1]):
        return _database_unavailable(request)
    if request.path.startswith("/api/"):
        return JsonResponse(
            {"message": "internal error; it has been logged", "code": "error", "extra": {}}, status=500
        )
    # No request context: the page must render even when the database is what failed.
    message = "Something went wrong on the server. It has been logged; try again in a moment."
    return HttpResponse(_bare_error("Server error", message), status=500)


def _database_unavailable(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After: the database is restarting or unreachable, which heals by itself."""
    retry = {"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    if request.path.startswith("/api/"):
        return JsonResponse(database_unavailable_body(), status=503, headers=retry)
    message = (
        "The database is restarting or cannot be reached. Nothing you did caused this; reload this "
        f"page in {DATABASE_RETRY_AFTER_S} seconds."
    )
    return HttpResponse(_bare_error("Database unavailable", message), status=503, headers=retry)


def _bare_error(title: str, message: str) -> str:
    """An error page that needs no request context (no database), so it renders when that failed."""
    return loader.get_template("webui/bare_error.html").render({"title": title, "message": message})

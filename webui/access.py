"""Who may see and change what, for pages: a project you are not a member of is a 404."""

from __future__ import annotations

import secrets

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from control.errors import NotFound
from control.models import Project
from control.selectors.projects import membership_get, project_get_for_user


def project_or_404(request: HttpRequest, project_id: int) -> Project:
    """The project if the signed-in user is a member of it, else a 404 page."""
    try:
        return project_get_for_user(user=request.user, project_id=project_id)
    except NotFound as exc:
        raise Http404(exc.message) from exc


def can_write(request: HttpRequest, project: Project) -> bool:
    """Whether the signed-in user may change the project's objects (owner or member, not viewer)."""
    membership = membership_get(user=request.user, project=project)
    return membership is not None and membership.can_write


def forbidden_page(request: HttpRequest, project: Project) -> HttpResponse:
    """The 403 page of a viewer who tried to change the project's objects."""
    message = f"you are a viewer of project {project.pk}; ask an owner for the member role"
    return render(request, "webui/error.html", {"title": "Forbidden", "message": message}, status=403)


# Create forms a user may have open at once (several tabs), per kind of form.
MAX_OPEN_FORMS = 20


def form_id_new(request: HttpRequest, kind: str) -> str:
    """A one-time id for a create form that shows a secret once: a reload of its answer, or the
    form sent twice, creates nothing more (see :func:`form_id_take`)."""
    key = f"webui.{kind}_form_ids"
    form_id = secrets.token_urlsafe(16)
    request.session[key] = [*request.session.get(key, []), form_id][-MAX_OPEN_FORMS:]
    return form_id


def form_id_take(request: HttpRequest, kind: str, form_id: str) -> bool:
    """Whether ``form_id`` was issued to this session for ``kind`` and not used yet; it cannot be
    used again."""
    key = f"webui.{kind}_form_ids"
    open_ids = request.session.get(key, [])
    if form_id not in open_ids:
        return False
    request.session[key] = [i for i in open_ids if i != form_id]
    return True

"""Who may see and change what, for pages: a project you are not a member of is a 404."""

from __future__ import annotations

from django.http import Http404, HttpRequest

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

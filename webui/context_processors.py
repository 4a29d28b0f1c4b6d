from functools import cache

from django.db.models import Subquery

from control.models import Alert, DataSource, Run
from control.selectors.projects import projects_for_user

# URL parameters that name an object of a project, and where that object's project is found.
_PROJECT_OF = {
    "run_id": Run.objects.values("project_id"),
    "source_id": DataSource.objects.values("project_id"),
}


def projects(request) -> dict:
    """The project switcher of the base layout."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_projects": []}
    return {"nav_projects": list(projects_for_user(user=user)[:50])}


def open_alerts(request) -> dict:
    """``nav_open_alerts``: the number of firing or acknowledged alerts of the page's project (the
    one its URL names, directly or through a run or data source), among the user's projects.

    One query, made only when the layout shows the number (pages of a project)."""
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    if user is None or not user.is_authenticated or match is None:
        return {"nav_open_alerts": 0}
    kwargs = match.kwargs

    @cache
    def count() -> int:
        alerts = Alert.objects.filter(state__in=Alert.OPEN, rule__project__memberships__user=user)
        if "project_id" in kwargs:
            return alerts.filter(rule__project_id=kwargs["project_id"]).count()
        for name, projects_of in _PROJECT_OF.items():
            if name in kwargs:
                project = Subquery(projects_of.filter(pk=kwargs[name])[:1])
                return alerts.filter(rule__project_id=project).count()
        return 0

    return {"nav_open_alerts": count}

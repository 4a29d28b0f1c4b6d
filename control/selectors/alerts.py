from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import Alert, AlertRule
from control.selectors.projects import visible_to


def alert_rules_list(*, user: AbstractBaseUser, project_id: int | None = None) -> QuerySet[AlertRule]:
    qs = visible_to(AlertRule.objects.all(), user=user)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs


def alerts_list(
    *,
    user: AbstractBaseUser,
    project_id: int | None = None,
    run_id: int | None = None,
    state: str | None = None,
) -> QuerySet[Alert]:
    qs = visible_to(Alert.objects.select_related("rule", "run"), user=user, project_path="rule__project")
    if project_id is not None:
        qs = qs.filter(rule__project_id=project_id)
    if run_id is not None:
        qs = qs.filter(run_id=run_id)
    if state:
        qs = qs.filter(state=state)
    return qs

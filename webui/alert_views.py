"""A project's alerts: the list with state and run filters, and acknowledging or resolving one.

Reads go through control.selectors.alerts, the state changes through
control.services.alerts. A project the user is not a member of, and an alert of
another project, answer 404 like missing ones; a viewer reads the list but gets
no buttons, and a POST from a viewer is refused with a 403 page.
"""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from control.errors import DomainError
from control.models import Alert, Project
from control.selectors.alerts import alerts_list
from control.selectors.runs import runs_list
from control.services.alerts import alert_acknowledge, alert_resolve
from webui.access import can_write, project_or_404

ALERTS_PER_PAGE = 50
MAX_RUN_CHOICES = 200  # runs offered by the run filter, newest first
KEPT_PARAMETERS = ("state", "run", "page")  # what a button brings back to after its POST


class AlertFilterForm(forms.Form):
    """Query parameters of the alert list; a field that does not validate is not applied."""

    state = forms.ChoiceField(choices=[("", "any state"), *Alert.State.choices], required=False)
    run = forms.IntegerField(min_value=1, required=False)


@require_GET
@login_required
def alerts_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    form = AlertFilterForm(request.GET)
    form.is_valid()  # a field that does not validate is left out of cleaned_data, hence not applied
    filters = form.cleaned_data
    alerts = alerts_list(
        user=request.user,
        project_id=project.pk,
        run_id=filters.get("run"),
        state=filters.get("state") or None,
    ).order_by("-fired_at", "-id")
    runs = (
        runs_list(user=request.user, project_id=project.pk)
        .prefetch_related(None)
        .only("id", "name")
        .order_by("-id")[:MAX_RUN_CHOICES]
    )
    context = {
        "project": project,
        "form": form,
        "page": Paginator(alerts, ALERTS_PER_PAGE).get_page(request.GET.get("page")),
        "runs": runs,
        "can_write": can_write(request, project),
        "filtered": any(filters.get(k) for k in ("state", "run")),
        "back": request.GET.urlencode(),
    }
    return render(request, "webui/alerts.html", context)


def _back_to_list(request: HttpRequest, project: Project) -> HttpResponse:
    """The alert list as the button's page showed it: only its own filter parameters are kept."""
    sent = QueryDict(request.POST.get("back", "")[:500])
    kept = QueryDict(mutable=True)
    for name in KEPT_PARAMETERS:
        value = sent.get(name, "")
        if value.isascii() and value.isalnum() and len(value) <= 20:
            kept[name] = value
    url = reverse("alerts", args=[project.pk])
    return redirect(f"{url}?{kept.urlencode()}" if kept else url)


def _change(
    request: HttpRequest, project_id: int, alert_id: int, action: Callable[[Alert], Alert], done: str
) -> HttpResponse:
    project = project_or_404(request, project_id)
    alert = alerts_list(user=request.user, project_id=project.pk).filter(pk=alert_id).first()
    if alert is None:
        raise Http404(f"alert {alert_id} does not exist in project {project.pk}")
    if not can_write(request, project):
        message = f"you are a viewer of project {project.pk}; ask an owner for the member role"
        return render(request, "webui/error.html", {"title": "Forbidden", "message": message}, status=403)
    try:
        action(alert)
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Alert {alert.pk} ({alert.rule.name}) {done}.")
    return _back_to_list(request, project)


@require_POST
@login_required
def alert_acknowledge_view(request: HttpRequest, project_id: int, alert_id: int) -> HttpResponse:
    return _change(
        request,
        project_id,
        alert_id,
        lambda alert: alert_acknowledge(alert=alert, user=request.user),
        "acknowledged",
    )


@require_POST
@login_required
def alert_resolve_view(request: HttpRequest, project_id: int, alert_id: int) -> HttpResponse:
    return _change(request, project_id, alert_id, lambda alert: alert_resolve(alert=alert), "resolved")

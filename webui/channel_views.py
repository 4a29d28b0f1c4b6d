"""A project's notification channels: the list with each channel's last deliveries, creating a
webhook or e-mail channel (a webhook's signing secret shown once), deleting one, and sending a
test message through one.

Channels are created, deleted and tested through control.services.notifications, which checks a
webhook URL as the API does (http or https, and no private address unless an administrator
allowed its host). The secret is rendered in the answer to the creating POST only, never put in a
URL, a redirect or the session, and that page is sent with ``no-store``; each create form carries
a one-time id kept in the session, so reloading the answer creates no second channel. A viewer
reads the list without buttons, with each address masked (a webhook URL carries its key); a POST
from a viewer answers a 403 page.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from control.errors import Conflict, DomainError
from control.models import AlertDelivery, NotificationChannel, Project
from control.selectors.notifications import (
    channel_address,
    channel_text_redacted,
    notification_channels_list,
)
from control.services.notifications import channel_create, channel_delete, channel_send_test
from webui.access import can_write, forbidden_page, form_id_new, form_id_take, project_or_404

DELIVERIES_SHOWN = 5  # the last deliveries listed under each channel


class ChannelCreateForm(forms.Form):
    """The fields of control.services.notifications.channel_create that a person chooses."""

    name = forms.CharField(max_length=200, strip=True)
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices, initial="webhook")
    url = forms.CharField(max_length=1000, required=False, strip=True, label="Webhook URL")
    email = forms.CharField(max_length=254, required=False, strip=True, label="E-mail address")
    form_id = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def service_fields(self) -> dict:
        """name and kind, with the address of that kind only (the other box may hold a leftover)."""
        data = self.cleaned_data
        address = "url" if data["kind"] == NotificationChannel.Kind.WEBHOOK else "email"
        return {"name": data["name"], "kind": data["kind"], address: data[address]}


def _channels(request: HttpRequest, project: Project):
    recent = AlertDelivery.objects.select_related("alert").order_by("-created_at", "-id")
    return notification_channels_list(user=request.user, project_id=project.pk).prefetch_related(
        Prefetch("deliveries", queryset=recent[:DELIVERIES_SHOWN], to_attr="recent_deliveries")
    )


def _render(
    request: HttpRequest,
    project: Project,
    form: ChannelCreateForm | None,
    *,
    created: NotificationChannel | None = None,
    status: int = 200,
) -> HttpResponse:
    writable = can_write(request, project)
    if form is None and writable:
        form = ChannelCreateForm(initial={"form_id": form_id_new(request, "channel")})
    channels = list(_channels(request, project))
    for channel in channels:  # a viewer reads addresses, and the errors that quote them, masked
        url, email = channel_address(channel=channel, whole=writable)
        channel.address = url if channel.kind == NotificationChannel.Kind.WEBHOOK else email
        for delivery in channel.recent_deliveries:
            delivery.error_shown = (
                delivery.last_error
                if writable
                else channel_text_redacted(channel=channel, text=delivery.last_error)
            )
    context = {
        "project": project,
        "channels": channels,
        "form": form if writable else None,
        "can_write": writable,
        "created": created,
        "deliveries_shown": DELIVERIES_SHOWN,
    }
    return render(request, "webui/channels.html", context, status=status)


@never_cache
@require_http_methods(["GET", "POST"])
@login_required
def channels_page(request: HttpRequest, project_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    if request.method == "GET":
        return _render(request, project, None)
    if not can_write(request, project):
        return forbidden_page(request, project)
    if not form_id_take(request, "channel", request.POST.get("form_id", "")):
        messages.error(
            request,
            "This form was already sent (or has expired); no channel was created. "
            "A webhook's secret is shown only once, right after the channel is created.",
        )
        return redirect("channels", project_id=project.pk)
    data = request.POST.copy()
    data["form_id"] = form_id_new(request, "channel")  # the one just sent is spent
    form = ChannelCreateForm(data)
    if form.is_valid():
        try:
            channel = channel_create(project=project, user=request.user, **form.service_fields())
        except DomainError as exc:
            named = {name: errors for name, errors in exc.fields.items() if name in form.fields}
            for name, errors in named.items():
                for error in errors:
                    form.add_error(name, error)
            if not named:
                form.add_error("name" if isinstance(exc, Conflict) else None, exc.message)
        else:
            fresh = ChannelCreateForm(initial={"form_id": data["form_id"]})
            return _render(request, project, fresh, created=channel)
    return _render(request, project, form, status=400)


def _channel_or_404(request: HttpRequest, project: Project, channel_id: int) -> NotificationChannel:
    channels = notification_channels_list(user=request.user, project_id=project.pk)
    channel = channels.filter(pk=channel_id).first()
    if channel is None:
        raise Http404(f"notification channel {channel_id} does not exist in project {project.pk}")
    return channel


@require_POST
@login_required
def channel_delete_view(request: HttpRequest, project_id: int, channel_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    channel = _channel_or_404(request, project, channel_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    channel_delete(channel=channel)
    messages.success(request, f"Channel {channel.name} deleted; rules that used it no longer send to it.")
    return redirect("channels", project_id=project.pk)


@require_POST
@login_required
def channel_test_view(request: HttpRequest, project_id: int, channel_id: int) -> HttpResponse:
    project = project_or_404(request, project_id)
    channel = _channel_or_404(request, project, channel_id)
    if not can_write(request, project):
        return forbidden_page(request, project)
    delivery = channel_send_test(channel=channel, user=request.user)
    messages.success(
        request, f"Test message {delivery.pk} to {channel.name} is on its way; its state shows below."
    )
    return redirect(reverse("channels", args=[project.pk]) + f"#channel-{channel.pk}")

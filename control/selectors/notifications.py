from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import AlertDelivery, NotificationChannel
from control.selectors.projects import visible_to


def notification_channels_list(
    *, user: AbstractBaseUser, project_id: int | None = None
) -> QuerySet[NotificationChannel]:
    qs = visible_to(NotificationChannel.objects.all(), user=user)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs


def channel_deliveries(*, channel: NotificationChannel) -> QuerySet[AlertDelivery]:
    """The channel's deliveries, the most recent first."""
    return channel.deliveries.select_related("alert").order_by("-created_at", "-id")

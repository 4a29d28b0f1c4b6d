"""Notification channels of a project: webhooks and e-mail addresses that alert rules send to.

A channel's signing secret is returned once, by its creation, like an API token's value. Its
address is a secret too: whole for the project's editors, masked for its viewers (and so are the
delivery errors that quote it); the serializers mask unless their context names the project among
``editable`` ones.
"""

from __future__ import annotations

from functools import partial

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_int
from control.models import AlertDelivery, NotificationChannel
from control.selectors.notifications import (
    channel_address,
    channel_deliveries,
    channel_text_redacted,
    notification_channels_list,
)
from control.selectors.projects import (
    check_can_write,
    membership_get,
    object_get_for_user,
    project_get_for_user,
    projects_editable_ids,
)
from control.services.notifications import channel_create, channel_delete, channel_send_test, channel_update


class ChannelOutput(serializers.ModelSerializer):
    url = serializers.CharField(
        read_only=True,
        help_text="webhook URL; masked (scheme, host, …, its last 4 characters) unless you may edit it",
    )
    email = serializers.CharField(
        read_only=True, help_text="e-mail address; masked (a…@example.com) unless you may edit it"
    )

    class Meta:
        model = NotificationChannel
        fields = ["id", "project", "name", "kind", "url", "email", "enabled", "created_at"]

    def to_representation(self, channel: NotificationChannel) -> dict:
        data = super().to_representation(channel)
        whole = channel.project_id in self.context.get("editable", ())
        data["url"], data["email"] = channel_address(channel=channel, whole=whole)
        return data


class ChannelCreatedOutput(ChannelOutput):
    secret = serializers.CharField(
        read_only=True, help_text="HMAC-SHA256 key of the webhook's X-Triune-Signature; shown once"
    )

    class Meta(ChannelOutput.Meta):
        fields = [*ChannelOutput.Meta.fields, "secret"]


class ChannelInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.choices)
    url = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, default="", help_text="webhook: http(s) URL"
    )
    email = serializers.EmailField(
        max_length=254, required=False, allow_blank=True, default="", help_text="e-mail: the address"
    )
    enabled = serializers.BooleanField(default=True)


class ChannelPatchInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.choices, required=False)
    url = serializers.CharField(max_length=1000, required=False, allow_blank=True)
    email = serializers.EmailField(max_length=254, required=False, allow_blank=True)
    enabled = serializers.BooleanField(required=False)


class DeliveryOutput(serializers.ModelSerializer):
    class Meta:
        model = AlertDelivery
        fields = [
            "id",
            "alert",
            "channel",
            "test",
            "state",
            "attempts",
            "last_error",
            "created_at",
            "sent_at",
        ]

    def to_representation(self, delivery: AlertDelivery) -> dict:
        data = super().to_representation(delivery)
        channel = self.context.get("channel") or delivery.channel
        if channel.project_id not in self.context.get("editable", ()):
            data["last_error"] = channel_text_redacted(channel=channel, text=data["last_error"])
        return data


class ChannelListCreateApi(ProjectApi):
    @extend_schema(parameters=[OpenApiParameter("project", int)], responses=ChannelOutput(many=True))
    def get(self, request):
        qs = notification_channels_list(user=request.user, project_id=query_int(request, "project"))
        context = {"editable": projects_editable_ids(user=request.user)}
        return paginated(self, qs, partial(ChannelOutput, context=context))

    @extend_schema(request=ChannelInput, responses={201: ChannelCreatedOutput})
    def post(self, request):
        data = ChannelInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = dict(data.validated_data)
        project = project_get_for_user(user=request.user, project_id=v.pop("project"), write=True)
        channel = channel_create(project=project, user=request.user, **v)
        return Response(ChannelCreatedOutput(channel, context=_editable(channel)).data, status=201)


def _editable(channel: NotificationChannel) -> dict:
    """The serializer context of a channel its caller may edit (checked already)."""
    return {"editable": {channel.project_id}, "channel": channel}


def _reader_context(request, channel: NotificationChannel) -> dict:
    """The serializer context of ``channel`` for a caller who may at least read it."""
    membership = membership_get(user=request.user, project=channel.project)
    editable = {channel.project_id} if membership is not None and membership.can_write else set()
    return {"editable": editable, "channel": channel}


def _channel_for(request, channel_id: int, *, write: bool = False) -> NotificationChannel:
    channel = object_get_for_user(
        NotificationChannel.objects.select_related("project"),
        user=request.user,
        pk=channel_id,
        label="notification channel",
    )
    if write:
        check_can_write(user=request.user, project=channel.project)
    return channel


class ChannelDetailApi(ProjectApi):
    @extend_schema(responses=ChannelOutput)
    def get(self, request, channel_id: int):
        channel = _channel_for(request, channel_id)
        return Response(ChannelOutput(channel, context=_reader_context(request, channel)).data)

    @extend_schema(request=ChannelPatchInput, responses=ChannelOutput)
    def patch(self, request, channel_id: int):
        channel = _channel_for(request, channel_id, write=True)
        data = ChannelPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        channel = channel_update(channel=channel, **data.validated_data)
        return Response(ChannelOutput(channel, context=_editable(channel)).data)

    @extend_schema(responses={204: None})
    def delete(self, request, channel_id: int):
        channel_delete(channel=_channel_for(request, channel_id, write=True))
        return Response(status=204)


class ChannelTestApi(ProjectApi):
    @extend_schema(request=None, responses={202: DeliveryOutput})
    def post(self, request, channel_id: int):
        channel = _channel_for(request, channel_id, write=True)
        delivery = channel_send_test(channel=channel, user=request.user)
        return Response(DeliveryOutput(delivery, context=_editable(channel)).data, status=202)


class ChannelDeliveriesApi(ProjectApi):
    @extend_schema(responses=DeliveryOutput(many=True))
    def get(self, request, channel_id: int):
        channel = _channel_for(request, channel_id)
        qs = channel_deliveries(channel=channel)
        return paginated(self, qs, partial(DeliveryOutput, context=_reader_context(request, channel)))

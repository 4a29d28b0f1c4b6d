"""Compute targets: every signed-in user sees them (to choose one per run); admins manage them."""

from __future__ import annotations

import json

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer
from control.errors import Conflict, NotFound
from control.models import ComputeTarget, Run
from control.services.compute import compute_target_save
from control.services.launch import target_offers

ENV_VAR_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"
# http(s)://host[:port][/]: a host name or a bracketed IPv6 address, and nothing else (no user
# or password: a credential in the address would be shown to every signed-in user).
ADDRESS_RE = r"^https?://([A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(:\d{1,5})?/?$"


class ComputeTargetOutput(serializers.ModelSerializer):
    offers = serializers.SerializerMethodField()
    is_local = serializers.BooleanField(read_only=True)

    class Meta:
        model = ComputeTarget
        fields = [
            "id",
            "name",
            "description",
            "address",
            "auth_token_env",
            "resources",
            "offers",
            "runtime_env",
            "enabled",
            "is_local",
            "created_at",
        ]

    def get_offers(self, target: ComputeTarget) -> dict[str, float]:
        return target_offers(target)


class ComputeTargetInput(StrictSerializer):
    name = serializers.SlugField(max_length=100)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    address = serializers.RegexField(
        ADDRESS_RE,
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="the cluster's Ray Jobs API, e.g. http://ray-head:8265",
        error_messages={
            "invalid": "must be the http:// or https:// address of the cluster's Ray Jobs API, host and "
            "port only, e.g. http://ray-head:8265"
        },
    )
    auth_token_env = serializers.RegexField(
        ENV_VAR_RE,
        required=False,
        allow_blank=True,
        default="",
        help_text="variable holding the Ray token",
        error_messages={
            "invalid": "must be the name of an environment variable (letters, digits and '_', not starting "
            "with a digit, at most 100), e.g. LAB_RAY_TOKEN; never the token itself"
        },
    )
    resources = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1e6), required=False, default=dict
    )
    runtime_env = serializers.DictField(required=False, default=dict)
    enabled = serializers.BooleanField(required=False, default=True)

    def validate_resources(self, value: dict) -> dict:
        return _json_checked("resources", value)

    def validate_runtime_env(self, value: dict) -> dict:
        return _json_checked("runtime_env", value)


JSON_MAX_BYTES = 64_000


def _json_checked(name: str, value: dict) -> dict:
    """``value`` if jsonb can store it (no NUL, lone surrogate, NaN or infinity) and it is under 64 kB."""
    stack: list[object] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend([*item.keys(), *item.values()])
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str) and "\x00" in item:
            raise ValidationError(f"{name} must not contain NUL characters (\\u0000)")
    try:
        size = len(json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationError(f"{name} must not contain lone surrogates (\\ud800-\\udfff)") from None
    except ValueError:
        raise ValidationError(f"{name} must not contain NaN or infinite numbers") from None
    if size > JSON_MAX_BYTES:
        raise ValidationError(f"{name} is larger than 64 kB")
    return value


def _admin_only(request) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("only an administrator may manage compute targets")


class ComputeTargetListCreateApi(ProjectApi):
    pagination_class = None  # the whole list, never paged

    @extend_schema(responses=ComputeTargetOutput(many=True))
    def get(self, request):
        return Response(ComputeTargetOutput(ComputeTarget.objects.all(), many=True).data)

    @extend_schema(request=ComputeTargetInput, responses={201: ComputeTargetOutput})
    def post(self, request):
        _admin_only(request)
        data = ComputeTargetInput(data=request.data)
        data.is_valid(raise_exception=True)
        target = compute_target_save(target=None, **data.validated_data)
        return Response(ComputeTargetOutput(target).data, status=201)


class ComputeTargetDetailApi(ProjectApi):
    def _get(self, target_id: int) -> ComputeTarget:
        target = ComputeTarget.objects.filter(pk=target_id).first()
        if target is None:
            raise NotFound(f"compute target {target_id} does not exist")
        return target

    @extend_schema(responses=ComputeTargetOutput)
    def get(self, request, target_id: int):
        return Response(ComputeTargetOutput(self._get(target_id)).data)

    @extend_schema(request=ComputeTargetInput, responses=ComputeTargetOutput)
    def patch(self, request, target_id: int):
        _admin_only(request)
        target = self._get(target_id)
        data = ComputeTargetInput(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        return Response(ComputeTargetOutput(compute_target_save(target=target, **data.validated_data)).data)

    @extend_schema(request=None, responses={204: None})
    def delete(self, request, target_id: int):
        _admin_only(request)
        target = self._get(target_id)
        if target.name == ComputeTarget.LOCAL:
            raise Conflict("the local target cannot be deleted; disable it instead")
        # A queued run is about to be submitted to the target: it counts as active here.
        active = (*Run.ACTIVE, Run.Status.QUEUED)
        if Run.objects.filter(compute_target=target.name, status__in=active).exists():
            raise Conflict(f"runs on {target.name!r} are active; wait for them or cancel them first")
        target.delete()
        return Response(status=204)

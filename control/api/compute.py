"""Compute targets: every signed-in user sees them (to choose one per run); admins manage them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer
from control.errors import Conflict, NotFound
from control.models import ComputeTarget, Run
from control.services.compute import compute_target_save
from control.services.launch import target_offers

ENV_VAR_RE = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$"


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
        r"^(https?://[A-Za-z0-9.\-\[\]:]+(:\d+)?/?)?$",
        max_length=500,
        required=False,
        allow_blank=True,
        default="",
        help_text="the cluster's Ray Jobs API, e.g. http://ray-head:8265",
    )
    auth_token_env = serializers.RegexField(
        ENV_VAR_RE, required=False, allow_blank=True, default="", help_text="variable holding the Ray token"
    )
    resources = serializers.DictField(
        child=serializers.FloatField(min_value=0, max_value=1e6), required=False, default=dict
    )
    runtime_env = serializers.DictField(required=False, default=dict)
    enabled = serializers.BooleanField(required=False, default=True)


def _admin_only(request) -> None:
    if not request.user.is_staff:
        raise PermissionDenied("only an administrator may manage compute targets")


class ComputeTargetListCreateApi(ProjectApi):
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
        if Run.objects.filter(compute_target=target.name, status__in=Run.ACTIVE).exists():
            raise Conflict(f"runs on {target.name!r} are active; wait for them or cancel them first")
        target.delete()
        return Response(status=204)

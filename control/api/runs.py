from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_choice, query_int
from control.errors import NotFound
from control.models import DataSource, Run, RunSource
from control.selectors.projects import check_can_write, object_get_for_user, project_get_for_user
from control.selectors.runs import runs_list
from control.services.runs import PRESETS, SourceWeight, run_cancel, run_create


class RunSourceOutput(serializers.ModelSerializer):
    name = serializers.CharField(source="data_source.name")

    class Meta:
        model = RunSource
        fields = ["data_source", "name", "weight"]


class RunOutput(serializers.ModelSerializer):
    sources = RunSourceOutput(source="run_sources", many=True, read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "project",
            "name",
            "description",
            "status",
            "preset",
            "config",
            "compute_target",
            "total_steps",
            "last_step",
            "error",
            "sources",
            "created_at",
            "started_at",
            "finished_at",
        ]


class SourceWeightInput(StrictSerializer):
    data_source = serializers.IntegerField(min_value=1)
    weight = serializers.FloatField(min_value=1e-9, max_value=1e9, default=1.0)


class RunInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    preset = serializers.ChoiceField(choices=PRESETS, default="tiny-cpu-demo")
    config = serializers.DictField(required=False, default=dict)
    compute_target = serializers.CharField(max_length=200, default="local")
    total_steps = serializers.IntegerField(min_value=1, max_value=10_000_000, default=100)
    sources = SourceWeightInput(many=True, allow_empty=False, max_length=200)

    def validate_config(self, value: dict) -> dict:
        import json

        problem = _jsonb_problem(value)
        if problem:
            raise ValidationError(f"config {problem}")
        if len(json.dumps(value)) > 64_000:
            raise ValidationError("config is larger than 64 kB")
        return value


CONFIG_MAX_DEPTH = 32


def _jsonb_problem(value: object) -> str | None:
    """What PostgreSQL's jsonb would refuse (a NUL or a lone surrogate), or a nesting too deep to encode."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > CONFIG_MAX_DEPTH:
                return f"is nested deeper than {CONFIG_MAX_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
        elif isinstance(item, str):
            if "\x00" in item:
                return "must not contain NUL characters (\\u0000)"
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    return "must not contain lone surrogates (\\ud800-\\udfff)"
    return None


class RunListCreateApi(ProjectApi):
    @extend_schema(
        parameters=[OpenApiParameter("project", int), OpenApiParameter("status", str)],
        responses=RunOutput(many=True),
    )
    def get(self, request):
        status = query_choice(request, "status", Run.Status.values)
        qs = runs_list(user=request.user, project_id=query_int(request, "project"), status=status)
        return paginated(self, qs, RunOutput)

    @extend_schema(request=RunInput, responses={201: RunOutput})
    def post(self, request):
        data = RunInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        project = project_get_for_user(user=request.user, project_id=v["project"], write=True)
        ids = [s["data_source"] for s in v["sources"]]
        found = {s.pk: s for s in DataSource.objects.filter(project=project, pk__in=ids)}
        missing = [i for i in ids if i not in found]
        if missing:
            raise NotFound(f"data source(s) {missing[:10]} do not exist in project {project.pk}")
        run = run_create(
            project=project,
            user=request.user,
            name=v["name"],
            description=v["description"],
            preset=v["preset"],
            config=v["config"],
            compute_target=v["compute_target"],
            total_steps=v["total_steps"],
            sources=[SourceWeight(found[s["data_source"]], s["weight"]) for s in v["sources"]],
        )
        return Response(RunOutput(run).data, status=201)


def run_for(request, run_id: int) -> Run:
    return object_get_for_user(Run.objects.all(), user=request.user, pk=run_id, label="run")


class RunDetailApi(ProjectApi):
    @extend_schema(responses=RunOutput)
    def get(self, request, run_id: int):
        return Response(RunOutput(run_for(request, run_id)).data)


class RunCancelApi(ProjectApi):
    @extend_schema(request=None, responses=RunOutput)
    def post(self, request, run_id: int):
        run = run_for(request, run_id)
        check_can_write(user=request.user, project=run.project)
        return Response(RunOutput(run_cancel(run=run)).data)

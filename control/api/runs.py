from __future__ import annotations

import math

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_choice, query_int
from control.errors import NotFound
from control.models import DataSource, Run, RunEvent, RunSource
from control.selectors.projects import check_can_write, object_get_for_user, project_get_for_user
from control.selectors.runs import run_progress, runs_list
from control.services.runs import (
    PRESETS,
    SourceWeight,
    run_cancel,
    run_clone,
    run_launch,
    run_resume,
    run_start,
    run_update,
)


class RunSourceOutput(serializers.ModelSerializer):
    name = serializers.CharField(source="data_source.name")

    class Meta:
        model = RunSource
        fields = ["data_source", "name", "weight"]


class RunProgressOutput(serializers.Serializer):
    step = serializers.IntegerField(help_text="steps done")
    total = serializers.IntegerField()
    fraction = serializers.FloatField()
    eta_seconds = serializers.FloatField(
        allow_null=True, help_text="from the last step times; null if unknown"
    )


class RunOutput(serializers.ModelSerializer):
    sources = RunSourceOutput(source="run_sources", many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    @extend_schema_field(RunProgressOutput)
    def get_progress(self, run: Run) -> dict:
        return run_progress(run=run)

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
            "num_cpus",
            "num_gpus",
            "total_steps",
            "last_step",
            "progress",
            "attempt",
            "resumed_from_step",
            "ray_submission_id",
            "spec_uri",
            "cloned_from",
            "error",
            "sources",
            "created_at",
            "queued_at",
            "started_at",
            "attempt_started_at",
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
    num_cpus = serializers.FloatField(min_value=0, max_value=4096, default=1.0)
    num_gpus = serializers.FloatField(min_value=0, max_value=1024, default=0.0)
    sources = SourceWeightInput(many=True, allow_empty=False, max_length=200)
    launch = serializers.BooleanField(
        default=True, help_text="queue the run for Ray at once; false keeps it pending (a draft)"
    )

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
        elif isinstance(item, float) and not math.isfinite(item):
            return "must not contain infinite or NaN numbers"
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
        run = run_start(
            launch=v["launch"],
            project=project,
            user=request.user,
            sources=_source_weights(project, v["sources"]),
            **run_fields(v),
        )
        return Response(RunOutput(run).data, status=201)


RUN_FIELDS = (
    "name",
    "description",
    "preset",
    "config",
    "compute_target",
    "total_steps",
    "num_cpus",
    "num_gpus",
)


def run_fields(validated: dict) -> dict:
    """The run's own fields out of :class:`RunInput`'s validated data (not project, sources, launch)."""
    return {name: validated[name] for name in RUN_FIELDS}


def _source_weights(project, items: list[dict]) -> list[SourceWeight]:
    ids = [s["data_source"] for s in items]
    found = {s.pk: s for s in DataSource.objects.filter(project=project, pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise NotFound(f"data source(s) {missing[:10]} do not exist in project {project.pk}")
    return [SourceWeight(found[s["data_source"]], s["weight"]) for s in items]


def run_for(request, run_id: int) -> Run:
    return object_get_for_user(Run.objects.all(), user=request.user, pk=run_id, label="run")


class RunUpdateInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    preset = serializers.ChoiceField(choices=PRESETS, required=False)
    config = serializers.DictField(required=False)
    compute_target = serializers.CharField(max_length=200, required=False)
    total_steps = serializers.IntegerField(min_value=1, max_value=10_000_000, required=False)
    num_cpus = serializers.FloatField(min_value=0, max_value=4096, required=False)
    num_gpus = serializers.FloatField(min_value=0, max_value=1024, required=False)
    sources = SourceWeightInput(many=True, allow_empty=False, max_length=200, required=False)

    validate_config = RunInput.validate_config


class RunDetailApi(ProjectApi):
    @extend_schema(responses=RunOutput)
    def get(self, request, run_id: int):
        return Response(RunOutput(run_for(request, run_id)).data)

    @extend_schema(request=RunUpdateInput, responses=RunOutput)
    def patch(self, request, run_id: int):
        """Edit a pending run (a draft or a clone) before it is launched."""
        run = _writable_run(request, run_id)
        data = RunUpdateInput(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        items = fields.pop("sources", None)
        sources = None if items is None else _source_weights(run.project, items)
        return Response(RunOutput(run_update(run=run, sources=sources, **fields)).data)


def _writable_run(request, run_id: int) -> Run:
    run = run_for(request, run_id)
    check_can_write(user=request.user, project=run.project)
    return run


class RunLaunchApi(ProjectApi):
    @extend_schema(request=None, responses=RunOutput)
    def post(self, request, run_id: int):
        """Queue a pending run for Ray (after every launch check)."""
        return Response(RunOutput(run_launch(run=_writable_run(request, run_id))).data)


class RunResumeApi(ProjectApi):
    @extend_schema(request=None, responses=RunOutput)
    def post(self, request, run_id: int):
        """A new attempt of a failed, cancelled or lost run from its newest complete checkpoint."""
        return Response(RunOutput(run_resume(run=_writable_run(request, run_id))).data)


class RunCloneInput(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)


class RunCloneApi(ProjectApi):
    @extend_schema(request=RunCloneInput, responses={201: RunOutput})
    def post(self, request, run_id: int):
        """A new pending run with this run's sources, preset and config; edit it, then launch it."""
        run = _writable_run(request, run_id)
        data = RunCloneInput(data=request.data or {})
        data.is_valid(raise_exception=True)
        clone = run_clone(run=run, user=request.user, name=data.validated_data.get("name"))
        return Response(RunOutput(clone).data, status=201)


class RunEventOutput(serializers.ModelSerializer):
    class Meta:
        model = RunEvent
        fields = ["at", "from_status", "to_status", "reason", "attempt"]


class RunEventsApi(ProjectApi):
    @extend_schema(responses=RunEventOutput(many=True))
    def get(self, request, run_id: int):
        """Every state transition of the run, oldest first."""
        return paginated(self, run_for(request, run_id).events.all(), RunEventOutput)


class RunCancelApi(ProjectApi):
    @extend_schema(request=None, responses=RunOutput)
    def post(self, request, run_id: int):
        return Response(RunOutput(run_cancel(run=_writable_run(request, run_id))).data)

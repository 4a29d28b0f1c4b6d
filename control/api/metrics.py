"""Metric ingest (run-scoped token of the run, or a member) and reads of a run's points."""

from __future__ import annotations

import math
import re

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_int
from control.api.runs import run_for
from control.models import ApiToken, MetricPoint
from control.selectors.projects import check_can_write
from control.selectors.runs import metric_points_after
from control.services.metrics import MAX_POINTS_PER_REQUEST, PointIn, metric_points_ingest
from control.services.runs import run_mark_running

METRIC_NAME_RE = r"^[A-Za-z0-9_./@:+\-]{1,200}$"
# A point's source is a source name of the run (the trainer's rule for them), or empty for the
# run as a whole: it is shown in chart legends, alert messages and filters.
SOURCE_NAME_RE = r"^[A-Za-z0-9_.\-]{0,200}$"
SOURCE_NAME_RULE = "must be empty or up to 200 letters, digits, '_', '.' or '-' (a source name of the run)"


class MetricPointInput(StrictSerializer):
    step = serializers.IntegerField(min_value=0, max_value=2**31 - 1)
    key = serializers.RegexField(METRIC_NAME_RE, max_length=200)
    source = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    value = serializers.FloatField(allow_null=True)

    def validate_source(self, value: str | None) -> str:
        if value and _SOURCE_NAME.fullmatch(value) is None:  # after the field's own checks
            raise serializers.ValidationError(SOURCE_NAME_RULE)
        return value or ""


class MetricIngestInput(StrictSerializer):
    points = MetricPointInput(many=True, allow_empty=False, max_length=MAX_POINTS_PER_REQUEST)


_METRIC_NAME = re.compile(METRIC_NAME_RE[1:-1])  # the pattern without anchors, for fullmatch
_SOURCE_NAME = re.compile(SOURCE_NAME_RE[1:-1])
_MAX_STEP = 2**31 - 1


def points_accepted_as_is(data: object) -> list[PointIn] | None:
    """The points of a batch that :class:`MetricIngestInput` would accept unchanged, else None.

    A batch of ``{"step": int, "key": str, "source": str | null, "value": number | null}``
    objects (the shape every client sends) is checked by this loop in a fraction of the time
    the serializer takes per field; anything else (a missing or unknown field, a string step, a
    source with surrounding spaces, any error at all) returns None, and the serializer decides
    and words the error, so the two never disagree on what is accepted.
    """
    if type(data) is not dict or len(data) != 1:
        return None
    items = data.get("points")
    if type(items) is not list or not 0 < len(items) <= MAX_POINTS_PER_REQUEST:
        return None
    keys: set[str] = set()
    sources: set[str] = {""}
    points = []
    append = points.append
    for item in items:
        if type(item) is not dict:
            return None
        fields = len(item)
        try:
            step = item["step"]
            key = item["key"]
            value = item["value"]
            source = item["source"] if fields == 4 else None
        except KeyError:  # a required field missing, or a fourth that is not the source
            return None
        if fields not in (3, 4) or type(step) is not int or not 0 <= step <= _MAX_STEP:
            return None
        if type(key) is not str:
            return None
        if key not in keys:
            if _METRIC_NAME.fullmatch(key) is None:
                return None
            keys.add(key)
        if source is None:
            source = ""
        elif type(source) is not str:
            return None
        elif source not in sources:
            # Anything else (surrounding spaces the serializer trims, a character outside the
            # rule) goes to the serializer, which trims or words the error.
            if _SOURCE_NAME.fullmatch(source) is None:
                return None
            sources.add(source)
        if value is not None:
            if type(value) is int:
                try:
                    value = float(value)
                except OverflowError:
                    return None
            elif type(value) is not float or not math.isfinite(value):
                return None
        append(PointIn(step, key, value, source))
    return points


class MetricPointOutput(serializers.ModelSerializer):
    class Meta:
        model = MetricPoint
        fields = ["step", "source", "key", "value"]


class RunMetricsApi(ProjectApi):
    """Read a run's points after a step, or ingest a batch (run-scoped token of this run, or a member)."""

    allow_run_token = True

    @extend_schema(
        parameters=[
            OpenApiParameter("after_step", int, description="only points with a greater step"),
            OpenApiParameter("key", str),
            OpenApiParameter("source", str, description="empty string for global metrics"),
        ],
        responses=MetricPointOutput(many=True),
    )
    def get(self, request, run_id: int):
        self._refuse_run_token(request)
        run = run_for(request, run_id)
        after = query_int(request, "after_step")
        qs = metric_points_after(
            run=run,
            step=-1 if after is None else after,
            key=request.query_params.get("key"),
            source=request.query_params.get("source"),
        )
        return paginated(self, qs, MetricPointOutput)

    @extend_schema(request=MetricIngestInput, responses={200: None})
    def post(self, request, run_id: int):
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None and token.is_run_scoped:
            if token.run_id != run_id:
                raise PermissionDenied("this run-scoped token belongs to another run")
            run = token.run
        else:
            run = run_for(request, run_id)
            check_can_write(user=request.user, project=run.project)
        points = points_accepted_as_is(request.data)
        if points is None:
            data = MetricIngestInput(data=request.data)
            data.is_valid(raise_exception=True)
            points = [
                PointIn(step=p["step"], key=p["key"], source=p.get("source") or "", value=p["value"])
                for p in data.validated_data["points"]
            ]
        count = metric_points_ingest(run=run, points=points)
        run_mark_running(run=run)
        return Response({"accepted": count})

    def _refuse_run_token(self, request) -> None:
        if isinstance(request.auth, ApiToken) and request.auth.is_run_scoped:
            raise PermissionDenied("a run-scoped token may only write metrics of its own run")

"""Downsampled series of a run, or of several runs side by side: what charts load.

The body is assembled here from the JSON arrays PostgreSQL renders per series (see
control/selectors/series.py), so a whole run's history is never turned into Python objects and back.
"""

from __future__ import annotations

import json
import re

from django.http import HttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from control.api.base import ProjectApi, query_choice, query_int
from control.api.metrics import METRIC_NAME_RE
from control.api.runs import run_for
from control.errors import NotFound
from control.models import Run
from control.models.metrics import GLOBAL_SOURCE
from control.selectors.projects import visible_to
from control.selectors.series import (
    DEFAULT_MAX_POINTS,
    GLOB,
    MAX_KEYS,
    MAX_MAX_POINTS,
    MAX_RUNS,
    MIN_MAX_POINTS,
    RunSeries,
    series_downsampled,
)

GLOBAL_SOURCE_PARAM = "_global"  # how the global source (the empty string) is named in ``sources``
MAX_SOURCES = 200
MAX_SOURCE_LENGTH = 200
X_AXES = ("step", "time")

# A metric key, the same key with a trailing * (every key with that prefix), or * alone (every key).
_KEY_OR_GLOB = re.compile(METRIC_NAME_RE[1:-1] + re.escape(GLOB) + "?|" + re.escape(GLOB))
_KEY_HELP = (
    "a metric key is 1 to 200 letters, digits or _ . / @ : + - (reward/final), "
    "optionally ending in * for every key with that prefix (reward/*)"
)


def _listed(request, name: str, example: str) -> list[str] | None:
    """A comma-separated query parameter as its items, None when absent; an empty one is a 400."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    if raw == "":
        raise ValidationError({name: [f"must list one or more items separated by commas, e.g. {example}"]})
    return raw.split(",")


def _empty_item(name: str, example: str) -> ValidationError:
    return ValidationError({name: [f"an empty item: separate items by single commas, e.g. {example}"]})


def query_keys(request) -> list[str]:
    """``keys``: required metric keys or globs, at most MAX_KEYS, duplicates dropped."""
    example = "keys=reward/final,reward/*"
    items = _listed(request, "keys", example)
    if items is None:
        raise ValidationError({"keys": [f"required: the metric keys to read, e.g. {example}"]})
    if len(items) > MAX_KEYS:
        raise ValidationError({"keys": [f"at most {MAX_KEYS} keys in one request, got {len(items)}"]})
    for item in items:
        if item == "":
            raise _empty_item("keys", example)
        if _KEY_OR_GLOB.fullmatch(item) is None:
            raise ValidationError({"keys": [f"{item[:50]!r} is not a metric key: {_KEY_HELP}"]})
    return list(dict.fromkeys(items))


def query_sources(request) -> list[str] | None:
    """``sources``: source names (``_global`` for global metrics), or None for every source."""
    example = f"sources=mm_math,{GLOBAL_SOURCE_PARAM}"
    items = _listed(request, "sources", example)
    if items is None:
        return None
    if len(items) > MAX_SOURCES:
        raise ValidationError(
            {"sources": [f"at most {MAX_SOURCES} sources in one request, got {len(items)}"]}
        )
    for item in items:
        if item == "":
            raise _empty_item("sources", example)
        if len(item) > MAX_SOURCE_LENGTH:
            raise ValidationError(
                {"sources": [f"{item[:50]!r}... is longer than a source name ({MAX_SOURCE_LENGTH} at most)"]}
            )
    names = [GLOBAL_SOURCE if item == GLOBAL_SOURCE_PARAM else item for item in items]
    return list(dict.fromkeys(names))


def query_run_ids(request) -> list[int]:
    """``runs``: required run ids, at most MAX_RUNS, duplicates dropped."""
    example = "runs=12,15"
    items = _listed(request, "runs", example)
    if items is None:
        raise ValidationError({"runs": [f"required: the ids of the runs to compare, e.g. {example}"]})
    if len(items) > MAX_RUNS:
        raise ValidationError({"runs": [f"at most {MAX_RUNS} runs in one request, got {len(items)}"]})
    ids = []
    for item in items:
        if item == "":
            raise _empty_item("runs", example)
        if not (item.isascii() and item.isdigit()) or len(item) > 18:
            raise ValidationError({"runs": [f"{item[:50]!r} is not a run id"]})
        ids.append(int(item))
    return list(dict.fromkeys(ids))


def runs_for(request, run_ids: list[int]) -> list[Run]:
    """The runs in the order asked; the first one the caller cannot see is a 404 naming it."""
    found = {run.pk: run for run in visible_to(Run.objects.filter(pk__in=run_ids), user=request.user)}
    for run_id in run_ids:
        if run_id not in found:
            raise NotFound(f"run {run_id} does not exist or is not in one of your projects")
    return [found[run_id] for run_id in run_ids]


def query_series(request) -> dict:
    """The parameters every series read shares, checked, as arguments of series_downsampled (and x)."""
    keys = query_keys(request)
    sources = query_sources(request)
    max_points = query_int(request, "max_points")
    if max_points is None:
        max_points = DEFAULT_MAX_POINTS
    elif not MIN_MAX_POINTS <= max_points <= MAX_MAX_POINTS:
        raise ValidationError(
            {"max_points": [f"must be between {MIN_MAX_POINTS} and {MAX_MAX_POINTS}, got {max_points}"]}
        )
    start, end = query_int(request, "start_step"), query_int(request, "end_step")
    for name, value in (("start_step", start), ("end_step", end)):
        if value is not None and value < 0:
            raise ValidationError({name: [f"must be 0 or more, got {value}"]})
    if start is not None and end is not None and start > end:
        raise ValidationError({"start_step": [f"must not be greater than end_step, got {start} > {end}"]})
    x = query_choice(request, "x", X_AXES) or "step"
    return {
        "keys": keys,
        "sources": sources,
        "max_points": max_points,
        "start_step": start,
        "end_step": end,
        "x": x,
    }


def _read(runs: list[Run], params: dict) -> list[RunSeries]:
    args = {name: value for name, value in params.items() if name != "x"}
    return series_downsampled(runs=runs, with_time=params["x"] == "time", **args)


def run_series_json(found: RunSeries, *, x: str) -> str:
    """One run's part of the body: RunSeriesOutput, with each series' points as PostgreSQL rendered them."""
    head = json.dumps(
        {"run": found.run.pk, "x": x, "start_step": found.start_step, "end_step": found.end_step}
    )
    series = ", ".join(
        f'{{"key": {json.dumps(s.key)}, "source": {json.dumps(s.source)}, '
        f'"points": {s.points_json}, "total": {s.total}}}'
        for s in found.series
    )
    return f'{head[:-1]}, "series": [{series}], "last_step": {found.run.last_step}}}'


def _json_response(body: str) -> HttpResponse:
    return HttpResponse(body.encode(), content_type="application/json")


class SeriesPointOutput(serializers.Serializer):
    step = serializers.IntegerField(help_text="the last step in the bucket")
    value = serializers.FloatField(allow_null=True, help_text="the value at that step")
    min = serializers.FloatField(allow_null=True, help_text="of the bucket's non-null values")
    max = serializers.FloatField(allow_null=True)
    count = serializers.IntegerField(help_text="points in the bucket, nulls included")
    time = serializers.DateTimeField(required=False, help_text="with x=time: when the last point was stored")


class SeriesOutput(serializers.Serializer):
    key = serializers.CharField()
    source = serializers.CharField(allow_blank=True, help_text="empty for a global metric")
    points = SeriesPointOutput(many=True)
    total = serializers.IntegerField(help_text="points of the series in range")


class RunSeriesOutput(serializers.Serializer):
    run = serializers.IntegerField()
    x = serializers.ChoiceField(choices=X_AXES)
    start_step = serializers.IntegerField()
    end_step = serializers.IntegerField()
    series = SeriesOutput(many=True)
    last_step = serializers.IntegerField(help_text="the run's last step when read; newer points come live")


class SeriesCompareOutput(serializers.Serializer):
    runs = RunSeriesOutput(many=True)


SERIES_PARAMETERS = [
    OpenApiParameter(
        "keys",
        str,
        required=True,
        description=f"metric keys separated by commas; reward/* globs; {MAX_KEYS} at most",
    ),
    OpenApiParameter(
        "sources",
        str,
        description=f"source names separated by commas ({GLOBAL_SOURCE_PARAM}: global metrics); default all",
    ),
    OpenApiParameter(
        "max_points",
        int,
        description=f"points per series, {MIN_MAX_POINTS} to {MAX_MAX_POINTS}; default 1000",
    ),
    OpenApiParameter("start_step", int, description="first step of the range; default 0"),
    OpenApiParameter("end_step", int, description="last step of the range; default the run's last step"),
    OpenApiParameter("x", str, enum=X_AXES, description="time adds each point's time; buckets stay by step"),
]


class RunSeriesApi(ProjectApi):
    """A run's series, downsampled: per bucket of equal step width the last point and min, max, count."""

    @extend_schema(parameters=SERIES_PARAMETERS, responses=RunSeriesOutput)
    def get(self, request, run_id: int):
        run = run_for(request, run_id)
        params = query_series(request)
        (found,) = _read([run], params)
        return _json_response(run_series_json(found, x=params["x"]))


class SeriesCompareApi(ProjectApi):
    """The same series of several runs (at most 10), each downsampled as by RunSeriesApi."""

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "runs", str, required=True, description=f"run ids separated by commas, {MAX_RUNS} at most"
            ),
            *SERIES_PARAMETERS,
        ],
        responses=SeriesCompareOutput,
    )
    def get(self, request):
        runs = runs_for(request, query_run_ids(request))
        params = query_series(request)
        parts = [run_series_json(found, x=params["x"]) for found in _read(runs, params)]
        return _json_response('{"runs": [' + ", ".join(parts) + "]}")

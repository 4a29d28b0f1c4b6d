"""A run's job log (paged by byte offset) and its artifacts, with downloads."""

from __future__ import annotations

import posixpath

from django.http import FileResponse, StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from control.api.base import ProjectApi, query_int
from control.api.runs import run_for
from control.errors import NotFound
from control.models import RunArtifact
from control.selectors.artifact_files import artifact_location, tar_gz_stream
from control.selectors.run_logs import run_log_chunk
from control.services.run_outputs import run_artifacts_sync


class LogChunkOutput(serializers.Serializer):
    attempt = serializers.IntegerField()
    offset = serializers.IntegerField()
    next_offset = serializers.IntegerField(help_text="pass it as offset to read on")
    size = serializers.IntegerField(help_text="bytes of the log known now")
    text = serializers.CharField()
    origin = serializers.ChoiceField(choices=["ray", "storage", "none"])
    complete = serializers.BooleanField(help_text="true once the attempt ended: the log will not grow")


class RunLogsApi(ProjectApi):
    @extend_schema(
        parameters=[
            OpenApiParameter("offset", int, description="first byte to return (default 0)"),
            OpenApiParameter("attempt", int, description="attempt number (default: the current one)"),
        ],
        responses=LogChunkOutput,
    )
    def get(self, request, run_id: int):
        """The job's log from byte ``offset`` (at most 1 MiB): Ray's while it runs, the stored copy after."""
        run = run_for(request, run_id)
        offset = query_int(request, "offset") or 0
        attempt = query_int(request, "attempt")
        if offset < 0:
            raise ValidationError({"offset": ["must be >= 0"]})
        if attempt is not None and not 1 <= attempt <= max(run.attempt, 1):
            raise ValidationError({"attempt": [f"must be between 1 and {max(run.attempt, 1)}"]})
        chunk = run_log_chunk(run=run, attempt=attempt, offset=offset)
        return Response(LogChunkOutput(chunk).data)


class RunArtifactOutput(serializers.ModelSerializer):
    download = serializers.SerializerMethodField()

    class Meta:
        model = RunArtifact
        fields = ["id", "kind", "step", "attempt", "uri", "size_bytes", "sha256", "created_at", "download"]

    def get_download(self, artifact: RunArtifact) -> str:
        return f"/api/v1/runs/{artifact.run_id}/artifacts/{artifact.pk}/download/"


class RunArtifactsApi(ProjectApi):
    pagination_class = None  # the whole list, never paged

    @extend_schema(responses=RunArtifactOutput(many=True))
    def get(self, request, run_id: int):
        """Checkpoints, the exported policy, the spec and the stored logs of the run."""
        run = run_for(request, run_id)
        if run.status in run.ACTIVE:
            run_artifacts_sync(run=run)
        return Response(RunArtifactOutput(run.artifacts.all(), many=True).data)


class RunArtifactDownloadApi(ProjectApi):
    @extend_schema(responses={(200, "application/octet-stream"): bytes, (200, "application/gzip"): bytes})
    def get(self, request, run_id: int, artifact_id: int):
        """The artifact's file, or a folder (a checkpoint, the policy) as a .tar.gz archive."""
        run = run_for(request, run_id)
        artifact = run.artifacts.filter(pk=artifact_id).first()
        if artifact is None:
            raise NotFound(f"artifact {artifact_id} does not exist in run {run.pk}")
        location = artifact_location(artifact.uri)
        if location is None:
            raise NotFound(f"artifact {artifact_id} is no longer in storage ({artifact.uri})")
        fs, path = location
        step = "" if artifact.step is None else f"-step-{artifact.step}"
        name = f"run-{run.pk}-{artifact.kind}{step}"
        if fs.isfile(path):
            # Bytes to save, whatever the name says (a config.json is not served as JSON to render).
            return FileResponse(
                fs.open(path, "rb"),
                as_attachment=True,
                filename=posixpath.basename(path),
                content_type="application/octet-stream",
            )
        response = StreamingHttpResponse(tar_gz_stream(fs, path, name), content_type="application/gzip")
        response["Content-Disposition"] = f'attachment; filename="{name}.tar.gz"'
        return response

from __future__ import annotations

import re
import shutil

from django.conf import settings
from django.http import FileResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import BaseParser
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer
from control.api.data import DatasetListApi, DatasetVersionOutput
from control.errors import DomainError, NotFound
from control.models import Upload
from control.selectors.projects import project_get_for_user
from control.services.datasets import (
    POLICIES,
    StagedFile,
    UploadRejected,
    dataset_version_create,
    error_report_path,
    stage_uploaded_file,
    staging_tempdir,
    upload_append,
    upload_create,
    upload_delete,
    upload_path,
)

# At most 19 digits a number (below 2**63): a longer one is malformed, not a huge int to parse.
CONTENT_RANGE = re.compile(r"^bytes (\d{1,19})-(\d{1,19})/(\d{1,19})$")


class UploadOutput(serializers.ModelSerializer):
    class Meta:
        model = Upload
        fields = ["id", "project", "filename", "size", "received", "status", "created_at"]


class UploadInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    filename = serializers.CharField(max_length=255)
    size = serializers.IntegerField(min_value=1)


class RawBodyParser(BaseParser):
    """Leaves the body unread, so a chunk streams from the socket to disk."""

    media_type = "application/octet-stream"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream


class UploadListCreateApi(ProjectApi):
    @extend_schema(request=UploadInput, responses={201: UploadOutput})
    def post(self, request):
        data = UploadInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        project = project_get_for_user(user=request.user, project_id=v["project"], write=True)
        upload = upload_create(project=project, user=request.user, filename=v["filename"], size=v["size"])
        return Response(UploadOutput(upload).data, status=201)


class PayloadTooLarge(DomainError):
    code = "too_large"
    status = 413


def _upload_for(request, upload_id) -> Upload:
    upload = Upload.objects.filter(pk=upload_id, user=request.user).first()
    if upload is None:
        raise NotFound(f"upload {upload_id} does not exist or is not yours")
    return upload


class UploadDetailApi(ProjectApi):
    parser_classes = [RawBodyParser]

    @extend_schema(responses=UploadOutput)
    def get(self, request, upload_id):
        return Response(UploadOutput(_upload_for(request, upload_id)).data)

    @extend_schema(
        request={"application/octet-stream": bytes},
        parameters=[
            OpenApiParameter(
                "Content-Range",
                {"type": "string", "pattern": CONTENT_RANGE.pattern},
                OpenApiParameter.HEADER,
                required=True,
            )
        ],
        responses=UploadOutput,
    )
    def put(self, request, upload_id):
        """Append one chunk: ``Content-Range: bytes <first>-<last>/<total>``, the body the bytes."""
        upload = _upload_for(request, upload_id)
        header = request.headers.get("Content-Range", "")
        match = CONTENT_RANGE.match(header)
        if match is None:
            raise ValidationError({"Content-Range": ["send 'Content-Range: bytes <first>-<last>/<total>'"]})
        first, last, total = (int(g) for g in match.groups())
        length = last - first + 1
        if total != upload.size or length < 1:
            raise ValidationError({"Content-Range": [f"total must be the declared size {upload.size}"]})
        declared = int(request.headers.get("Content-Length") or 0)
        if declared != length:
            raise ValidationError(
                {"Content-Length": [f"must equal the range length {length}, got {declared}"]}
            )
        if length > settings.TRIUNE_MAX_CHUNK_BYTES:
            raise DomainError(f"a chunk is at most {settings.TRIUNE_MAX_CHUNK_BYTES} bytes, got {length}")
        upload = upload_append(upload=upload, offset=first, stream=request.stream, length=length)
        return Response(UploadOutput(upload).data)

    @extend_schema(responses={204: None})
    def delete(self, request, upload_id):
        upload_delete(upload=_upload_for(request, upload_id))
        return Response(status=204)


class DatasetCreateInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")
    policy = serializers.ChoiceField(choices=POLICIES, default="reject")
    test_fraction = serializers.FloatField(min_value=0.0, max_value=0.99, default=0.1)
    uploads = serializers.ListField(child=serializers.UUIDField(), required=False, max_length=1000)
    # As many as Django parses from one request (a request with more is refused before the view).
    files = serializers.ListField(
        child=serializers.FileField(), required=False, max_length=settings.DATA_UPLOAD_MAX_NUMBER_FILES
    )

    def to_internal_value(self, data):
        if hasattr(data, "getlist"):  # multipart: repeated "files" and "uploads" fields
            plain = {k: data.get(k) for k in data if k not in ("files", "uploads")}
            if "files" in data:
                plain["files"] = data.getlist("files")
            if "uploads" in data:
                plain["uploads"] = data.getlist("uploads")
            data = plain
        return super().to_internal_value(data)


class DatasetCreateOutput(serializers.Serializer):
    dataset = serializers.IntegerField()
    created = serializers.BooleanField()
    version = DatasetVersionOutput()
    report = serializers.DictField()


class DatasetCreateApi(ProjectApi):
    """Commit files (multipart ``files`` or completed chunked ``uploads``) as a dataset version."""

    @extend_schema(
        request={"multipart/form-data": DatasetCreateInput, "application/json": DatasetCreateInput},
        responses={201: DatasetCreateOutput, 200: DatasetCreateOutput},
    )
    def post(self, request):
        declared = int(request.headers.get("Content-Length") or 0)
        if declared > settings.TRIUNE_MAX_UPLOAD_BYTES:
            raise PayloadTooLarge(
                f"the request is {declared} bytes; the limit is {settings.TRIUNE_MAX_UPLOAD_BYTES}."
                " Upload large files in chunks through /api/v1/uploads/"
            )
        data = DatasetCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        project = project_get_for_user(user=request.user, project_id=v["project"], write=True)
        uploaded, upload_ids = v.get("files") or [], v.get("uploads") or []
        if bool(uploaded) == bool(upload_ids):
            raise ValidationError(
                {"files": ["send either files (multipart) or uploads (ids of chunked uploads)"]}
            )
        tempdir = staging_tempdir()
        try:
            files: list[StagedFile] = []
            uploads = []
            for upload_id in upload_ids:
                upload = _upload_for(request, upload_id)
                if upload.project_id != project.pk:
                    raise NotFound(f"upload {upload_id} does not exist in project {project.pk}")
                if upload.status != Upload.Status.COMPLETE:
                    raise DomainError(
                        f"upload {upload_id} has {upload.received} of {upload.size} bytes; finish it first"
                    )
                uploads.append(upload)
                files.append(StagedFile(name=upload.filename, path=upload_path(upload)))
            for item in uploaded:
                if item.size > settings.TRIUNE_MAX_UPLOAD_BYTES:
                    raise DomainError(f"{item.name} is larger than {settings.TRIUNE_MAX_UPLOAD_BYTES} bytes")
                files.append(stage_uploaded_file(item, tempdir))
            try:
                outcome = dataset_version_create(
                    project=project,
                    user=request.user,
                    name=v["name"],
                    description=v["description"],
                    files=files,
                    policy=v["policy"],
                    test_fraction=v["test_fraction"],
                )
            except UploadRejected as exc:
                return Response(
                    {
                        "message": exc.message,
                        "code": exc.code,
                        "extra": {"rows": exc.rows, "report": exc.report},
                    },
                    status=400,
                )
            for upload in uploads:
                upload_delete(upload=upload)
        finally:
            shutil.rmtree(tempdir, ignore_errors=True)
        version = outcome.version
        body = {
            "dataset": version.dataset_id,
            "created": outcome.created,
            "version": DatasetVersionOutput(version).data,
            "report": version.report,
        }
        return Response(body, status=201 if outcome.created else 200)


class DatasetListCreateApi(DatasetListApi, DatasetCreateApi):
    """``GET`` lists datasets, ``POST`` uploads a new version."""


class UploadReportCsvApi(ProjectApi):
    """The full list of row errors of an upload, as CSV (file, row, field, message)."""

    @extend_schema(responses={(200, "text/csv"): bytes})
    def get(self, request, project_id: int, report_id: str):
        project = project_get_for_user(user=request.user, project_id=project_id)
        if not re.fullmatch(r"[0-9a-f]{32}", report_id):
            raise NotFound(f"no error report {report_id[:40]!r}")
        path = error_report_path(project.pk, report_id)
        if not path.exists():
            raise NotFound(f"no error report {report_id} in project {project.pk}")
        response = FileResponse(
            open(path, "rb"),
            content_type="text/csv",
            as_attachment=True,
            filename=f"upload-errors-{report_id[:8]}.csv",
        )
        response["X-Content-Type-Options"] = "nosniff"
        return response

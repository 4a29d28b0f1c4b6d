from __future__ import annotations

import io

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from PIL import Image
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, query_int
from control.errors import DomainError, NotFound
from control.models import DataSource
from control.selectors.projects import object_get_for_user
from control.selectors.samples import sample_get, samples_page, split_count
from control.services.preview import boxes_of, score_response

MAX_PAGE = 50
SAFE_IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}


def _source_for(request, source_id: int) -> DataSource:
    return object_get_for_user(DataSource.objects.all(), user=request.user, pk=source_id, label="data source")


def sample_payload(source: DataSource, split: str, index: int, row: dict) -> dict:
    reward_model = row.get("reward_model") or {}
    images = row.get("images") or []
    return {
        "index": index,
        "split": split,
        "id": (row.get("extra_info") or {}).get("id"),
        "ability": row.get("ability"),
        "prompt": row.get("prompt"),
        "ground_truth": reward_model.get("ground_truth"),
        "answer": reward_model.get("answer"),
        "verifier": reward_model.get("verifier"),
        "boxes": boxes_of(reward_model),
        "images": [
            f"/api/v1/data-sources/{source.pk}/samples/{split}/{index}/images/{k}/"
            for k in range(len(images))
        ],
    }


class SampleListApi(ProjectApi):
    @extend_schema(
        parameters=[
            OpenApiParameter("split", str, enum=["train", "test"]),
            OpenApiParameter("offset", int),
            OpenApiParameter("limit", int, description=f"at most {MAX_PAGE}"),
        ],
        responses={200: OpenApiTypes.OBJECT},
    )
    def get(self, request, source_id: int):
        source = _source_for(request, source_id)
        split = request.query_params.get("split", "train")
        offset = query_int(request, "offset") or 0
        limit = query_int(request, "limit") or 10
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise DomainError(f"offset must be >= 0 and limit in [1, {MAX_PAGE}]")
        rows = samples_page(source=source, split=split, offset=offset, limit=limit)
        return Response(
            {
                "count": split_count(source, split),
                "offset": offset,
                "results": [sample_payload(source, split, i, row) for i, row in rows],
            }
        )


class SampleImageApi(ProjectApi):
    @extend_schema(responses={(200, "image/png"): bytes})
    def get(self, request, source_id: int, split: str, index: int, image: int):
        source = _source_for(request, source_id)
        row = sample_get(source=source, split=split, index=index)
        images = row.get("images") or []
        if not 0 <= image < len(images):
            raise NotFound(f"sample {index} has {len(images)} image(s); no image {image}")
        data = images[image]["bytes"]
        with Image.open(io.BytesIO(data)) as decoded:
            content_type = SAFE_IMAGE_FORMATS.get(decoded.format or "")
            if content_type is None:  # re-encode anything else rather than serve unknown bytes
                out = io.BytesIO()
                decoded.convert("RGB").save(out, format="PNG")
                data, content_type = out.getvalue(), "image/png"
        response = HttpResponse(data, content_type=content_type)
        response["X-Content-Type-Options"] = "nosniff"
        response["Cache-Control"] = "private, max-age=3600"
        return response


class ScoreInput(StrictSerializer):
    response = serializers.CharField(max_length=100_000, allow_blank=True, trim_whitespace=False)
    step = serializers.IntegerField(min_value=0, max_value=10_000_000, default=0)
    total_steps = serializers.IntegerField(min_value=1, max_value=10_000_000, default=1)


class SampleScoreApi(ProjectApi):
    """Score a pasted model response against one sample with the sample's own verifier."""

    @extend_schema(request=ScoreInput, responses={200: OpenApiTypes.OBJECT})
    def post(self, request, source_id: int, split: str, index: int):
        source = _source_for(request, source_id)
        data = ScoreInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        row = sample_get(source=source, split=split, index=index)
        if v["step"] > v["total_steps"]:
            raise DomainError("step must not exceed total_steps")
        image_size = None
        images = row.get("images") or []
        if images:
            with Image.open(io.BytesIO(images[0]["bytes"])) as decoded:
                image_size = decoded.size
        result = score_response(
            response=v["response"],
            reward_model=row["reward_model"],
            step=v["step"],
            total_steps=v["total_steps"],
            image_size=image_size,
        )
        return Response(result)

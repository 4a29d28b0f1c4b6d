from __future__ import annotations

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated, query_choice, query_int
from control.models import Dataset, DatasetVersion, DataSource, Tag
from control.selectors.data import data_sources_list, datasets_list, tags_list
from control.selectors.projects import check_can_write, object_get_for_user, project_get_for_user
from control.services.data import data_source_update, tag_create, tag_delete


class TagOutput(serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "project", "name", "color"]


class TagInput(StrictSerializer):
    project = serializers.IntegerField(min_value=1)
    name = serializers.CharField(max_length=64)
    color = serializers.RegexField(r"^#[0-9a-fA-F]{6}$", required=False, default="#6c757d")


class DatasetVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = DatasetVersion
        fields = ["id", "number", "content_hash", "size_bytes", "sample_count", "created_at"]


class DatasetOutput(serializers.ModelSerializer):
    versions = DatasetVersionOutput(many=True, read_only=True)

    class Meta:
        model = Dataset
        fields = ["id", "project", "name", "description", "created_at", "versions"]


class DataSourceOutput(serializers.ModelSerializer):
    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    dataset = serializers.IntegerField(source="dataset_version.dataset_id", read_only=True)

    class Meta:
        model = DataSource
        fields = [
            "id",
            "project",
            "dataset",
            "dataset_version",
            "name",
            "task_type",
            "verifier",
            "train_count",
            "test_count",
            "description",
            "tags",
            "stats",
            "created_at",
        ]


class DataSourcePatchInput(StrictSerializer):
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)
    task_type = serializers.ChoiceField(choices=DataSource.TaskType.choices, required=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, max_length=100)


PROJECT_PARAM = OpenApiParameter("project", int, description="only objects of this project")


class DatasetListApi(ProjectApi):
    @extend_schema(parameters=[PROJECT_PARAM], responses=DatasetOutput(many=True))
    def get(self, request):
        qs = datasets_list(user=request.user, project_id=query_int(request, "project"))
        return paginated(self, qs, DatasetOutput)


class DatasetDetailApi(ProjectApi):
    @extend_schema(responses=DatasetOutput)
    def get(self, request, dataset_id: int):
        dataset = object_get_for_user(
            Dataset.objects.all(), user=request.user, pk=dataset_id, label="dataset"
        )
        return Response(DatasetOutput(dataset).data)


class DataSourceListApi(ProjectApi):
    @extend_schema(
        parameters=[
            PROJECT_PARAM,
            OpenApiParameter("tag", str),
            OpenApiParameter("task_type", str),
            OpenApiParameter("search", str),
        ],
        responses=DataSourceOutput(many=True),
    )
    def get(self, request):
        params = request.query_params
        qs = data_sources_list(
            user=request.user,
            project_id=query_int(request, "project"),
            tag=params.get("tag", "")[:64] or None,
            task_type=query_choice(request, "task_type", DataSource.TaskType.values),
            search=params.get("search", "")[:200] or None,
        )
        return paginated(self, qs.select_related("dataset_version"), DataSourceOutput)


class DataSourceDetailApi(ProjectApi):
    def _get(self, request, source_id: int) -> DataSource:
        return object_get_for_user(
            DataSource.objects.select_related("dataset_version"),
            user=request.user,
            pk=source_id,
            label="data source",
        )

    @extend_schema(responses=DataSourceOutput)
    def get(self, request, source_id: int):
        return Response(DataSourceOutput(self._get(request, source_id)).data)

    @extend_schema(request=DataSourcePatchInput, responses=DataSourceOutput)
    def patch(self, request, source_id: int):
        source = self._get(request, source_id)
        check_can_write(user=request.user, project=source.project)
        data = DataSourcePatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        source = data_source_update(
            source=source,
            description=v.get("description"),
            task_type=v.get("task_type"),
            tag_names=v.get("tags"),
        )
        return Response(DataSourceOutput(source).data)


class TagListCreateApi(ProjectApi):
    @extend_schema(parameters=[PROJECT_PARAM], responses=TagOutput(many=True))
    def get(self, request):
        return paginated(
            self, tags_list(user=request.user, project_id=query_int(request, "project")), TagOutput
        )

    @extend_schema(request=TagInput, responses={201: TagOutput})
    def post(self, request):
        data = TagInput(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        project = project_get_for_user(user=request.user, project_id=v["project"], write=True)
        tag = tag_create(project=project, name=v["name"], color=v["color"])
        return Response(TagOutput(tag).data, status=201)


class TagDetailApi(ProjectApi):
    @extend_schema(responses=TagOutput)
    def get(self, request, tag_id: int):
        tag = object_get_for_user(Tag.objects.all(), user=request.user, pk=tag_id, label="tag")
        return Response(TagOutput(tag).data)

    @extend_schema(responses={204: None})
    def delete(self, request, tag_id: int):
        tag = object_get_for_user(Tag.objects.all(), user=request.user, pk=tag_id, label="tag")
        check_can_write(user=request.user, project=tag.project)
        tag_delete(tag=tag)
        return Response(status=204)

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from control.api.base import ProjectApi, StrictSerializer, paginated
from control.errors import Forbidden
from control.models import Project, ProjectMembership
from control.selectors.projects import project_get_for_user, projects_for_user
from control.services.projects import project_create, project_member_set, project_update


class ProjectOutput(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "created_at", "role"]

    def get_role(self, obj: Project) -> str | None:
        request = self.context.get("request")
        if request is None:
            return None
        m = obj.memberships.filter(user=request.user).first()
        return m.role if m else None


class ProjectInput(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True, default="")


class ProjectPatchInput(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(max_length=5000, required=False, allow_blank=True)


class MemberInput(StrictSerializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=ProjectMembership.Role.choices)


class MemberOutput(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username")

    class Meta:
        model = ProjectMembership
        fields = ["username", "role", "created_at"]


class ProjectListCreateApi(ProjectApi):
    @extend_schema(responses=ProjectOutput(many=True))
    def get(self, request):
        return paginated(self, projects_for_user(user=request.user), _with_context(request, ProjectOutput))

    @extend_schema(request=ProjectInput, responses={201: ProjectOutput})
    def post(self, request):
        data = ProjectInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_create(user=request.user, **data.validated_data)
        return Response(ProjectOutput(project, context={"request": request}).data, status=201)


class ProjectDetailApi(ProjectApi):
    @extend_schema(responses=ProjectOutput)
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        return Response(ProjectOutput(project, context={"request": request}).data)

    @extend_schema(request=ProjectPatchInput, responses=ProjectOutput)
    def patch(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id, write=True)
        data = ProjectPatchInput(data=request.data)
        data.is_valid(raise_exception=True)
        project = project_update(project=project, **data.validated_data)
        return Response(ProjectOutput(project, context={"request": request}).data)


class ProjectMembersApi(ProjectApi):
    @extend_schema(responses=MemberOutput(many=True))
    def get(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        memberships = project.memberships.select_related("user").order_by("user__username")
        return paginated(self, memberships, MemberOutput)

    @extend_schema(request=MemberInput, responses={201: MemberOutput})
    def post(self, request, project_id: int):
        project = project_get_for_user(user=request.user, project_id=project_id)
        membership = project.memberships.get(user=request.user)
        if membership.role != ProjectMembership.Role.OWNER:
            raise Forbidden("only an owner of the project can change its members")
        data = MemberInput(data=request.data)
        data.is_valid(raise_exception=True)
        m = project_member_set(project=project, **data.validated_data)
        return Response(MemberOutput(m).data, status=status.HTTP_201_CREATED)


def _with_context(request, serializer_class):
    def factory(*args, **kwargs):
        return serializer_class(*args, context={"request": request}, **kwargs)

    return factory

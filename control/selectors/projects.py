from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.errors import Forbidden, NotFound
from control.models import Project, ProjectMembership


def projects_for_user(*, user: AbstractBaseUser) -> QuerySet[Project]:
    return Project.objects.filter(memberships__user=user).distinct()


def membership_get(*, user: AbstractBaseUser, project: Project) -> ProjectMembership | None:
    return ProjectMembership.objects.filter(user=user, project=project).first()


def projects_editable_ids(*, user: AbstractBaseUser) -> set[int]:
    """The projects whose objects ``user`` may change (owner or member, not viewer)."""
    roles = [ProjectMembership.Role.OWNER, ProjectMembership.Role.MEMBER]
    return set(
        ProjectMembership.objects.filter(user=user, role__in=roles).values_list("project_id", flat=True)
    )


def project_get_for_user(*, user: AbstractBaseUser, project_id: int, write: bool = False) -> Project:
    """The project if ``user`` is a member; missing and not-a-member look alike (404)."""
    membership = (
        ProjectMembership.objects.select_related("project").filter(user=user, project_id=project_id).first()
    )
    if membership is None:
        raise NotFound(f"project {project_id} does not exist or you are not a member of it")
    if write and not membership.can_write:
        raise Forbidden(f"you are a viewer of project {project_id}; ask an owner for the member role")
    return membership.project


def visible_to(queryset: QuerySet, *, user: AbstractBaseUser, project_path: str = "project") -> QuerySet:
    """Restrict any project-owned queryset to the projects ``user`` is a member of."""
    return queryset.filter(**{f"{project_path}__memberships__user": user}).distinct()


def object_get_for_user(
    queryset: QuerySet, *, user: AbstractBaseUser, pk: int, label: str, project_path: str = "project"
):
    obj = visible_to(queryset, user=user, project_path=project_path).filter(pk=pk).first()
    if obj is None:
        raise NotFound(f"{label} {pk} does not exist or is not in one of your projects")
    return obj


def check_can_write(*, user: AbstractBaseUser, project: Project) -> None:
    membership = membership_get(user=user, project=project)
    if membership is None:
        raise NotFound(f"project {project.pk} does not exist or you are not a member of it")
    if not membership.can_write:
        raise Forbidden(f"you are a viewer of project {project.pk}; ask an owner for the member role")

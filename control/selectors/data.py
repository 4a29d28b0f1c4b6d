from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import Dataset, DataSource, Tag
from control.selectors.projects import visible_to


def datasets_list(*, user: AbstractBaseUser, project_id: int | None = None) -> QuerySet[Dataset]:
    qs = visible_to(Dataset.objects.all(), user=user).prefetch_related("versions")
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs


def data_sources_list(
    *,
    user: AbstractBaseUser,
    project_id: int | None = None,
    tag: str | None = None,
    task_type: str | None = None,
    search: str | None = None,
) -> QuerySet[DataSource]:
    qs = visible_to(DataSource.objects.all(), user=user).prefetch_related("tags")
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if tag:
        qs = qs.filter(tags__name=tag)
    if task_type:
        qs = qs.filter(task_type=task_type)
    if search:
        qs = qs.filter(name__icontains=search)
    return qs.distinct()


def tags_list(*, user: AbstractBaseUser, project_id: int | None = None) -> QuerySet[Tag]:
    qs = visible_to(Tag.objects.all(), user=user)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    return qs

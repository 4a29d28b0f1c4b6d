from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction

from control.errors import Conflict, DomainError
from control.models import DataSource, Project, Tag


def tag_create(*, project: Project, name: str, color: str = "#6c757d") -> Tag:
    name = name.strip()
    if not name:
        raise DomainError("tag name must not be blank", fields={"name": ["must not be blank"]})
    try:
        with transaction.atomic():
            return Tag.objects.create(project=project, name=name, color=color)
    except IntegrityError as exc:
        raise Conflict(f"tag {name!r} already exists in this project", fields={"name": ["exists"]}) from exc


def tag_delete(*, tag: Tag) -> None:
    tag.delete()


@transaction.atomic
def data_source_update(
    *,
    source: DataSource,
    description: str | None = None,
    task_type: str | None = None,
    tag_names: Iterable[str] | None = None,
) -> DataSource:
    """Edit the user-facing fields of a source; unknown tag names are created in its project."""
    if description is not None:
        source.description = description
    if task_type is not None:
        if task_type not in DataSource.TaskType.values:
            allowed = ", ".join(DataSource.TaskType.values)
            raise DomainError(
                f"task_type must be one of {allowed}, got {task_type!r}", fields={"task_type": ["invalid"]}
            )
        source.task_type = task_type
    source.save(update_fields=["description", "task_type"])
    if tag_names is not None:
        tags = []
        for raw in tag_names:
            name = raw.strip()
            if not name:
                raise DomainError("tag names must not be blank", fields={"tags": ["blank tag"]})
            tag, _ = Tag.objects.get_or_create(project=source.project, name=name)
            tags.append(tag)
        source.tags.set(tags)
    return source

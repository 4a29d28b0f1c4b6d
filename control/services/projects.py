from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from control.errors import Conflict, DomainError, NotFound
from control.models import Project, ProjectMembership
from control.services.alert_defaults import alert_defaults_ensure


def _unique_slug(name: str) -> str:
    base = slugify(name)[:80] or "project"
    slug, n = base, 1
    while Project.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def project_create(
    *, user: AbstractBaseUser, name: str, description: str = "", default_alerts: bool = True
) -> Project:
    """Create a project; its creator becomes its owner; it starts with the built-in alert rules
    (control/services/alert_defaults.py) unless ``default_alerts`` is false."""
    if not name.strip():
        raise DomainError("name must not be blank", fields={"name": ["must not be blank"]})
    _refuse_nul(name=name, description=description)
    project = Project.objects.create(
        name=name.strip(), slug=_unique_slug(name), description=description, created_by=user
    )
    ProjectMembership.objects.create(project=project, user=user, role=ProjectMembership.Role.OWNER)
    if default_alerts:
        alert_defaults_ensure(project=project, user=user)
    return project


def _refuse_nul(**texts: str | None) -> None:
    """A NUL character cannot be stored in PostgreSQL text: refused, naming the field."""
    for field, text in texts.items():
        if text is not None and "\x00" in text:
            message = f"{field} must not contain NUL characters"
            raise DomainError(message, fields={field: ["must not contain NUL characters"]})


def project_update(*, project: Project, name: str | None = None, description: str | None = None) -> Project:
    _refuse_nul(name=name, description=description)
    if name is not None:
        if not name.strip():
            raise DomainError("name must not be blank", fields={"name": ["must not be blank"]})
        project.name = name.strip()
    if description is not None:
        project.description = description
    project.save(update_fields=["name", "description"])
    return project


def project_member_set(*, project: Project, username: str, role: str) -> ProjectMembership:
    """Add a user to a project or change their role."""
    if role not in ProjectMembership.Role.values:
        allowed = ", ".join(ProjectMembership.Role.values)
        raise DomainError(f"role must be one of {allowed}, got {role!r}", fields={"role": ["invalid"]})
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise NotFound(f"no user named {username!r}")
    owners = project.memberships.filter(role=ProjectMembership.Role.OWNER)
    if role != ProjectMembership.Role.OWNER and list(owners.values_list("user_id", flat=True)) == [user.pk]:
        raise Conflict(f"{username} is the last owner of this project; make another member owner first")
    try:
        membership, _ = ProjectMembership.objects.update_or_create(
            project=project, user=user, defaults={"role": role}
        )
    except IntegrityError as exc:  # pragma: no cover - concurrent add of the same member
        raise Conflict(f"{username} is being added to this project concurrently; retry") from exc
    return membership

"""Projects, members, tags and data-source edits through their services."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_project_create_makes_the_creator_owner_with_a_unique_slug(user):
    from control.services.projects import project_create

    first = project_create(user=user, name="  Vision RL ")
    second = project_create(user=user, name="Vision RL")
    symbols = project_create(user=user, name="!!!")
    assert (first.name, first.slug, second.slug, symbols.slug) == (
        "Vision RL",
        "vision-rl",
        "vision-rl-2",
        "project",
    )
    assert first.memberships.get().role == "owner"


@pytest.mark.parametrize("name", ["", "   ", "\t\n"])
def test_project_create_refuses_a_blank_name(name, user):
    from control.errors import DomainError
    from control.services.projects import project_create

    with pytest.raises(DomainError, match="name must not be blank"):
        project_create(user=user, name=name)


def test_project_member_set_adds_and_changes_roles(project, other_user):
    from control.services.projects import project_member_set

    assert project_member_set(project=project, username="mallory", role="viewer").role == "viewer"
    assert project_member_set(project=project, username="mallory", role="member").role == "member"
    assert project.memberships.filter(user=other_user).count() == 1


@pytest.mark.parametrize(
    ("username", "role", "error", "message"),
    [
        ("mallory", "admin", "DomainError", "role must be one of owner, member, viewer, got 'admin'"),
        ("nobody", "viewer", "NotFound", "no user named 'nobody'"),
    ],
)
def test_project_member_set_refuses(username, role, error, message, project, other_user):
    from control import errors
    from control.services.projects import project_member_set

    with pytest.raises(getattr(errors, error)) as caught:
        project_member_set(project=project, username=username, role=role)
    assert caught.value.message == message


def test_tag_create_refuses_blank_and_duplicate(project):
    from control.errors import Conflict, DomainError
    from control.services.data import tag_create

    assert tag_create(project=project, name=" chart ").name == "chart"
    with pytest.raises(Conflict, match="tag 'chart' already exists in this project"):
        tag_create(project=project, name="chart")
    with pytest.raises(DomainError, match="tag name must not be blank"):
        tag_create(project=project, name="  ")


def test_data_source_update_sets_tags_creating_new_ones_in_its_project(
    project, make_source, make_project, user
):
    from control.models import Tag
    from control.services.data import data_source_update

    Tag.objects.create(project=make_project(user), name="reasoning")  # same name, another project
    source = make_source(project)
    data_source_update(source=source, tag_names=["reasoning", " math ", "reasoning"], description="geo")
    assert sorted(source.tags.values_list("name", flat=True)) == ["math", "reasoning"]
    assert set(source.tags.values_list("project_id", flat=True)) == {project.pk}
    data_source_update(source=source, tag_names=[])
    assert source.tags.count() == 0
    source.refresh_from_db()
    assert source.description == "geo"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"task_type": "poetry"}, "task_type must be one of math, puzzle, science, chart, ocr, counting, "),
        ({"tag_names": ["ok", " "]}, "tag names must not be blank"),
    ],
)
def test_data_source_update_refuses(kwargs, message, make_source, project):
    from control.errors import DomainError
    from control.services.data import data_source_update

    with pytest.raises(DomainError) as caught:
        data_source_update(source=make_source(project), **kwargs)
    assert caught.value.message.startswith(message)

"""Projects, members, tags, data sources, datasets and tokens through the REST API."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.integration.control.helpers import assert_error, field_errors

pytestmark = pytest.mark.django_db

API = "/api/v1/"


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


def test_a_new_project_has_its_creator_as_owner(owner):
    created = owner.post(API + "projects/", {"name": "Orsta 7B", "description": "v-triune"}, format="json")
    assert created.status_code == 201
    body = created.json()
    assert (body["name"], body["slug"], body["description"], body["role"]) == (
        "Orsta 7B",
        "orsta-7b",
        "v-triune",
        "owner",
    )
    members = owner.get(API + f"projects/{body['id']}/members/").json()["results"]
    assert [(m["username"], m["role"]) for m in members] == [("alice", "owner")]


def test_patching_a_project(project, owner):
    response = owner.patch(API + f"projects/{project.pk}/", {"name": "  renamed "}, format="json")
    assert (response.json()["name"], response.json()["description"]) == ("renamed", "")
    assert_error(owner.patch(API + f"projects/{project.pk}/", {"name": "  "}, format="json"), 400)


def test_projects_list_shows_my_role_in_each(project, make_project, other_user, add_member, user, owner):
    theirs = make_project(other_user, "theirs")
    add_member(theirs, user, "viewer")
    listed = owner.get(API + "projects/").json()["results"]
    assert [(p["name"], p["role"]) for p in listed] == [("theirs", "viewer"), ("vision rl", "owner")]


def test_an_owner_adds_and_changes_members(project, owner, other_user):
    added = owner.post(
        API + f"projects/{project.pk}/members/", {"username": "mallory", "role": "viewer"}, format="json"
    )
    assert added.status_code == 201
    assert (added.json()["username"], added.json()["role"]) == ("mallory", "viewer")
    changed = owner.post(
        API + f"projects/{project.pk}/members/", {"username": "mallory", "role": "member"}, format="json"
    )
    assert changed.json()["role"] == "member"
    roles = [
        (m["username"], m["role"])
        for m in owner.get(API + f"projects/{project.pk}/members/").json()["results"]
    ]
    assert roles == [("alice", "owner"), ("mallory", "member")]


def test_adding_an_unknown_user_is_404(project, owner):
    response = owner.post(
        API + f"projects/{project.pk}/members/", {"username": "ghost", "role": "viewer"}, format="json"
    )
    assert_error(response, 404, code="not_found", message="no user named 'ghost'")


def test_the_last_owner_cannot_step_down(project, owner):
    # Otherwise nobody could ever change the members again.
    response = owner.post(
        API + f"projects/{project.pk}/members/", {"username": "alice", "role": "viewer"}, format="json"
    )
    assert_error(
        response,
        409,
        code="conflict",
        message="alice is the last owner of this project; make another member owner first",
    )
    assert project.memberships.get(user__username="alice").role == "owner"


def test_an_owner_may_step_down_when_another_owner_remains(project, owner, other_user, add_member):
    add_member(project, other_user, "owner")
    response = owner.post(
        API + f"projects/{project.pk}/members/", {"username": "alice", "role": "member"}, format="json"
    )
    assert response.status_code == 201
    assert response.json()["role"] == "member"


def test_tags_create_list_and_delete(project, owner, make_source):
    created = owner.post(
        API + "tags/", {"project": project.pk, "name": "perception", "color": "#ff0000"}, format="json"
    )
    assert created.status_code == 201
    tag = created.json()
    assert (tag["name"], tag["color"], tag["project"]) == ("perception", "#ff0000", project.pk)
    dup = owner.post(API + "tags/", {"project": project.pk, "name": "perception"}, format="json")
    assert_error(dup, 409, code="conflict", message="tag 'perception' already exists in this project")
    source = make_source(project, name="v3det")
    owner.patch(API + f"data-sources/{source.pk}/", {"tags": ["perception"]}, format="json")
    assert owner.delete(API + f"tags/{tag['id']}/").status_code == 204
    assert owner.get(API + f"data-sources/{source.pk}/").json()["tags"] == []
    assert owner.get(API + "tags/").json()["count"] == 0


def test_data_sources_filter_by_tag_task_type_and_search(project, owner, make_source):
    geo = make_source(project, name="geo_math", task_type="math")
    det = make_source(project, name="v3det_train", verifier="detection", task_type="detection")
    make_source(project, name="chart_qa", task_type="chart")
    owner.patch(API + f"data-sources/{geo.pk}/", {"tags": ["reasoning", "hard"]}, format="json")
    owner.patch(API + f"data-sources/{det.pk}/", {"tags": ["perception"]}, format="json")

    def names(**query):
        return [s["name"] for s in owner.get(API + "data-sources/", query).json()["results"]]

    assert names() == ["chart_qa", "geo_math", "v3det_train"]
    assert names(tag="reasoning") == ["geo_math"]
    assert names(tag="hard", task_type="math") == ["geo_math"]
    assert names(task_type="detection") == ["v3det_train"]
    assert names(search="MATH") == ["geo_math"]
    assert names(tag="nothing") == []


def test_patching_a_data_source(project, owner, make_source):
    source = make_source(project, name="geo")
    response = owner.patch(
        API + f"data-sources/{source.pk}/", {"description": "geometry", "task_type": "science"}, format="json"
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["task_type"], body["verifier"], body["tags"]) == (
        "geometry",
        "science",
        "mathverify",
        [],
    )


def test_too_many_tags_on_a_source_is_400(project, owner, make_source):
    source = make_source(project)
    errors = field_errors(
        owner.patch(API + f"data-sources/{source.pk}/", {"tags": ["t"] * 101}, format="json")
    )
    assert errors == {"tags": ["Ensure this field has no more than 100 elements."]}


def test_a_blank_tag_on_a_source_is_400(project, owner, make_source):
    source = make_source(project)
    response = owner.patch(API + f"data-sources/{source.pk}/", {"tags": ["ok", "   "]}, format="json")
    assert_error(response, 400, message="tags: 1: This field may not be blank.")


def test_datasets_list_and_detail(project, owner, make_source):
    source = make_source(project, name="geo")
    listed = owner.get(API + "datasets/").json()["results"]
    assert [d["id"] for d in listed] == [source.dataset_version.dataset_id]
    detail = owner.get(API + f"datasets/{source.dataset_version.dataset_id}/").json()
    assert [v["number"] for v in detail["versions"]] == [1]


def test_tokens_are_shown_once_and_listed_without_the_secret(owner, user):
    created = owner.post(API + "tokens/", {"name": "ci"}, format="json")
    assert created.status_code == 201
    raw = created.json()["token"]
    assert raw.startswith("tri_") and created.json()["prefix"] == raw[4:12]
    listed = owner.get(API + "tokens/").json()["results"]
    assert {t["name"] for t in listed} == {"ci", "tests"}
    assert all("token" not in t and "digest" not in t for t in listed)
    assert raw not in str(listed)


def test_a_token_of_another_user_cannot_be_revoked(owner, other_user, client_for):
    theirs = client_for(other_user).post(API + "tokens/", {"name": "theirs"}, format="json").json()
    assert_error(
        owner.delete(API + f"tokens/{theirs['id']}/"),
        404,
        message=f"token {theirs['id']} does not exist or is not yours",
    )


def test_a_token_that_expires_in_the_past_is_400(owner):
    from django.utils import timezone

    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    errors = field_errors(owner.post(API + "tokens/", {"name": "dead", "expires_at": past}, format="json"))
    assert errors == {"expires_at": ["must be in the future"]}


def test_a_token_with_an_expiry_works_until_then(owner, api_client):
    from django.utils import timezone

    future = (timezone.now() + timedelta(days=1)).isoformat()
    created = owner.post(API + "tokens/", {"name": "day", "expires_at": future}, format="json").json()
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {created['token']}")
    assert api_client.get(API + "projects/").status_code == 200


def test_session_writes_need_the_csrf_token(user, project):
    from rest_framework.test import APIClient

    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(API + "tags/", {"project": project.pk, "name": "x"}, format="json")
    body = assert_error(response, 403, code="permission_denied")
    assert body["message"].startswith("CSRF Failed")

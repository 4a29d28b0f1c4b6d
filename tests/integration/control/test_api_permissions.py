"""Who may call what: every endpoint of control/api/urls.py against every kind of caller.

The table ENDPOINTS lists each (method, route) once with a valid body; a test
checks it covers every route and method the URL configuration exposes, so a new
endpoint cannot go untested here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from tests.integration.control.helpers import Raw, assert_error, send

pytestmark = pytest.mark.django_db

API = "/api/v1/"


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # relative to /api/v1/, placeholders filled from World.ids()
    ok: int | None  # status for the project's owner (None: served in the upload tests)
    body: object = None  # a callable of the World ids, or None for no body
    project_write: bool = False  # a write to a project's objects: viewers get 403
    foreign_ok: bool = False  # a caller outside the project succeeds (creates their own object)
    list_key: str | None = field(default=None)  # how a list result names its project
    personal: bool = False  # the object belongs to one user (tokens, uploads), not to the project
    admin: bool = False  # a platform-wide object that admins manage (compute targets)

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.route}"

    def path(self, ids: dict[str, int]) -> str:
        return API + self.route.format(**ids)

    def payload(self, ids: dict[str, int]):
        return self.body(ids) if callable(self.body) else None


def _run_body(ids):
    # A draft: the world's source has no data files, so a launch would be refused (tested elsewhere).
    return {
        "project": ids["project"],
        "name": "second run",
        "sources": [{"data_source": ids["source"]}],
        "launch": False,
    }


def _rule_body(ids):
    return {"project": ids["project"], "name": "format drop", "key": "reward/format", "condition": "above"}


def _channel_body(ids):
    return {"project": ids["project"], "name": "pager", "kind": "email", "email": "pager@example.com"}


def _dataset_body(ids):
    return {"project": ids["project"], "name": "more", "uploads": [ids["upload"]]}


def _upload_body(ids):
    return {"project": ids["project"], "filename": "train.parquet", "size": 100}


ENDPOINTS = [
    Endpoint("get", "projects/", 200, list_key="id"),
    Endpoint("post", "projects/", 201, lambda ids: {"name": "fresh"}, foreign_ok=True),
    Endpoint("get", "projects/{project}/", 200),
    Endpoint("patch", "projects/{project}/", 200, lambda ids: {"description": "new"}, project_write=True),
    Endpoint("get", "projects/{project}/members/", 200),
    Endpoint("get", "projects/{project}/upload-reports/{report}/", None),  # served in the upload tests
    Endpoint(
        "post",
        "projects/{project}/members/",
        201,
        lambda ids: {"username": "newbie", "role": "viewer"},
        project_write=True,
    ),
    Endpoint("get", "datasets/", 200, list_key="project"),
    Endpoint("post", "datasets/", None, _dataset_body, project_write=True),
    Endpoint("post", "uploads/", 201, _upload_body, project_write=True),
    Endpoint("get", "uploads/{upload}/", 200, personal=True),
    Endpoint(
        "put",
        "uploads/{upload}/",
        200,
        lambda ids: Raw(b"abcd", headers={"Content-Range": "bytes 0-3/4"}),
        personal=True,
    ),
    Endpoint("delete", "uploads/{upload}/", 204, personal=True),
    Endpoint("get", "datasets/{dataset}/", 200),
    Endpoint("get", "data-sources/", 200, list_key="project"),
    Endpoint("get", "data-sources/{source}/", 200),
    Endpoint("patch", "data-sources/{source}/", 200, lambda ids: {"description": "d"}, project_write=True),
    # Samples need a source with data files: they are served in the upload tests.
    Endpoint("get", "data-sources/{source}/samples/", None),
    Endpoint("get", "data-sources/{source}/samples/{split}/{index}/images/{image}/", None),
    Endpoint(
        "post", "data-sources/{source}/samples/{split}/{index}/score/", None, lambda ids: {"response": "x"}
    ),
    Endpoint("get", "tags/", 200, list_key="project"),
    Endpoint(
        "post", "tags/", 201, lambda ids: {"project": ids["project"], "name": "fresh"}, project_write=True
    ),
    Endpoint("get", "tags/{tag}/", 200),
    Endpoint("delete", "tags/{tag}/", 204, project_write=True),
    Endpoint("get", "runs/", 200, list_key="project"),
    Endpoint("post", "runs/", 201, _run_body, project_write=True),
    Endpoint("get", "runs/{run}/", 200),
    Endpoint("patch", "runs/{run}/", 200, lambda ids: {"description": "d"}, project_write=True),
    Endpoint("post", "runs/{run}/cancel/", 200, project_write=True),
    # Launch and resume need data files and Ray: served in the runs-on-Ray tests.
    Endpoint("post", "runs/{run}/launch/", None, project_write=True),
    Endpoint("post", "runs/{run}/resume/", None, project_write=True),
    Endpoint("post", "runs/{run}/clone/", 201, lambda ids: {"name": "again"}, project_write=True),
    Endpoint("get", "runs/{run}/events/", 200),
    # A run's tokens are for its editors: viewers get 403 on the list too.
    Endpoint("get", "runs/{run}/tokens/", 200, project_write=True),
    Endpoint("delete", "runs/{run}/tokens/{run_token}/", 204, project_write=True),
    Endpoint("get", "runs/{run}/logs/", 200),
    Endpoint("get", "runs/{run}/artifacts/", 200),
    Endpoint("get", "runs/{run}/artifacts/{artifact}/download/", None),
    Endpoint("get", "runs/{run}/metrics/", 200),
    # Series reads need keys= (and runs=): the owner, viewers and strangers are served in test_api_series.
    Endpoint("get", "runs/{run}/series/", None),
    Endpoint("get", "series/", None),
    Endpoint(
        "post",
        "runs/{run}/metrics/",
        200,
        lambda ids: {"points": [{"step": 1, "key": "reward/final", "value": 0.5}]},
        project_write=True,
    ),
    Endpoint("get", "alert-rules/", 200, list_key="project"),
    Endpoint("post", "alert-rules/", 201, _rule_body, project_write=True),
    Endpoint("get", "alert-rules/{rule}/", 200),
    Endpoint("patch", "alert-rules/{rule}/", 200, lambda ids: {"threshold": 0.25}, project_write=True),
    Endpoint("delete", "alert-rules/{rule}/", 204, project_write=True),
    Endpoint("post", "alert-rules/defaults/?project={project}", 200, project_write=True),
    Endpoint("get", "alerts/", 200, list_key="run"),
    Endpoint("post", "alerts/{alert}/acknowledge/", 200, project_write=True),
    Endpoint("post", "alerts/{alert}/resolve/", 200, project_write=True),
    Endpoint("get", "notification-channels/", 200, list_key="project"),
    Endpoint("post", "notification-channels/", 201, _channel_body, project_write=True),
    Endpoint("get", "notification-channels/{channel}/", 200),
    Endpoint(
        "patch", "notification-channels/{channel}/", 200, lambda ids: {"name": "pager"}, project_write=True
    ),
    Endpoint("delete", "notification-channels/{channel}/", 204, project_write=True),
    Endpoint("post", "notification-channels/{channel}/test/", 202, project_write=True),
    Endpoint("get", "notification-channels/{channel}/deliveries/", 200),
    Endpoint("get", "tokens/", 200, list_key="token"),
    Endpoint("post", "tokens/", 201, lambda ids: {"name": "ci"}, foreign_ok=True),
    Endpoint("delete", "tokens/{token}/", 204, personal=True),
    # Compute targets are platform-wide: anyone signed in reads them, admins manage them.
    Endpoint("get", "compute-targets/", 200, admin=True),
    Endpoint("post", "compute-targets/", None, admin=True),
    Endpoint("get", "compute-targets/{target}/", 200, admin=True),
    Endpoint("patch", "compute-targets/{target}/", None, admin=True),
    Endpoint("delete", "compute-targets/{target}/", None, admin=True),
]
IDS = [e.id for e in ENDPOINTS]
WRITES = [e for e in ENDPOINTS if e.project_write]
DETAILS = [e for e in ENDPOINTS if "{" in e.route and not e.admin]
LISTS = [e for e in ENDPOINTS if e.list_key is not None]

NOT_AUTHENTICATED = "Authentication credentials were not provided."
BAD_TOKEN = "invalid, expired or revoked token"
RUN_TOKEN_REFUSED = "a run-scoped token may only write metrics of its own run"


def _route_key(route: str) -> str:
    """A route with its placeholders blanked and without its query string."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", route.split("?")[0])


def test_the_table_covers_every_route_and_method():
    from control.api.urls import urlpatterns

    exposed = set()
    for pattern in urlpatterns:
        view = pattern.callback.view_class
        methods = {m for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)}
        exposed |= {(m, _route_key(str(pattern.pattern))) for m in methods}
    tabled = {(e.method, _route_key(e.route)) for e in ENDPOINTS}
    assert exposed - tabled == set(), "endpoints missing from ENDPOINTS: add a row for each"
    assert tabled - exposed == set(), "ENDPOINTS lists routes that do not exist"


SERVED = [e for e in ENDPOINTS if e.ok is not None]


@pytest.mark.parametrize("endpoint", SERVED, ids=[e.id for e in SERVED])
def test_the_owner_is_served(endpoint, world, client_for):
    ids = world.ids()
    response = send(client_for(world.owner), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert response.status_code == endpoint.ok, response.content[:500]


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_unauthenticated_is_401(endpoint, api_client):
    # Ids that exist nowhere: authentication is checked before any lookup.
    names = "project dataset source tag run rule alert token target artifact channel run_token".split()
    ids = dict.fromkeys(names, 987654)
    ids.update(
        upload="0b7e7f4c-4a59-4d0e-9c55-6d1c1b8f2a11", split="train", index=0, image=0, report="0" * 32
    )
    response = send(api_client, endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert_error(response, 401, code="not_authenticated", message=NOT_AUTHENTICATED)
    assert response["WWW-Authenticate"] == "Bearer"


def _bad_credentials(kind: str, user) -> str:
    from django.utils import timezone

    from control.services.tokens import api_token_create, api_token_revoke

    if kind == "unknown":
        return "Bearer tri_" + "A" * 43
    if kind == "no_prefix":
        return "Bearer " + "A" * 47
    if kind == "too_long":
        return "Bearer tri_" + "A" * 500
    token, raw = api_token_create(user=user, name=kind)
    if kind == "revoked":
        api_token_revoke(token=token)
    elif kind == "expired":
        token.expires_at = timezone.now() - timedelta(seconds=1)
        token.save()
    elif kind == "inactive_user":
        user.is_active = False
        user.save()
    return f"Bearer {raw}"


BAD_KINDS = ["unknown", "no_prefix", "too_long", "revoked", "expired", "inactive_user"]


@pytest.mark.parametrize("kind", BAD_KINDS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=IDS)
def test_a_wrong_revoked_or_expired_token_is_401(endpoint, kind, world, api_client):
    api_client.credentials(HTTP_AUTHORIZATION=_bad_credentials(kind, world.owner))
    ids = world.ids()
    response = send(api_client, endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert_error(response, 401, code="authentication_failed", message=BAD_TOKEN)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Bearer", "malformed Authorization header: send 'Authorization: Bearer <token>'"),
        ("Bearer a b", "malformed Authorization header: send 'Authorization: Bearer <token>'"),
        ("Bearer tri_é", "the token must be ASCII"),
        ("Token tri_" + "A" * 43, BAD_TOKEN),
    ],
)
def test_a_malformed_authorization_header_is_401_with_a_message(header, message, world, api_client):
    response = api_client.get(API + "projects/", HTTP_AUTHORIZATION=header.encode("utf-8").decode("latin-1"))
    assert_error(response, 401, code="authentication_failed", message=message)


def test_basic_auth_is_not_a_way_in(world, api_client):
    response = api_client.get(API + "projects/", HTTP_AUTHORIZATION="Basic b2xpdmlhOnB3LWZvci10ZXN0cy0xMjM=")
    assert_error(response, 401, code="not_authenticated", message=NOT_AUTHENTICATED)


@pytest.mark.parametrize("endpoint", DETAILS, ids=[e.id for e in DETAILS])
def test_a_member_of_another_project_gets_404_on_detail_routes(endpoint, world, client_for):
    from control.models import Alert, ApiToken, DataSource, Project, Run, Tag

    before = {m: m.objects.count() for m in (Project, DataSource, Tag, Run, Alert, ApiToken)}
    ids = world.ids()
    response = send(client_for(world.stranger), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    body = assert_error(response, 404, code="not_found")
    assert "does not exist" in body["message"]
    # Nothing of the project leaks into the message beyond the id that was asked for.
    assert "vision" not in body["message"] and "geo_math" not in body["message"]
    world.run.refresh_from_db()
    world.alert.refresh_from_db()
    assert (world.run.status, world.alert.state) == ("pending", "firing")
    # client_for made one token for the stranger; nothing else appeared or vanished.
    after = {m: m.objects.count() for m in (Project, DataSource, Tag, Run, Alert, ApiToken)}
    assert after == {**before, ApiToken: before[ApiToken] + 1}


@pytest.mark.parametrize(
    "endpoint",
    [e for e in WRITES if "{" not in e.route],
    ids=[e.id for e in WRITES if "{" not in e.route],
)
def test_a_member_of_another_project_cannot_create_in_it(endpoint, world, client_for):
    ids = world.ids()
    response = send(client_for(world.stranger), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert_error(
        response,
        404,
        code="not_found",
        message=f"project {world.project.pk} does not exist or you are not a member of it",
    )


OPEN_TO_ALL = [e for e in ENDPOINTS if e.foreign_ok]


@pytest.mark.parametrize("endpoint", OPEN_TO_ALL, ids=[e.id for e in OPEN_TO_ALL])
def test_anyone_signed_in_creates_their_own_projects_and_tokens(endpoint, world, client_for):
    ids = world.ids()
    response = send(client_for(world.stranger), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert response.status_code == endpoint.ok, response.content[:300]
    assert "project" not in response.json()  # nothing of the other project is involved


def _project_of(item: dict, key: str, world) -> int | None:
    """Which of the world's two projects a list item belongs to."""
    if key in ("id", "project"):
        return item[key]
    if key == "run":
        return {world.run.pk: world.project.pk, world.f_run.pk: world.foreign.pk}.get(item["run"])
    if key == "token":
        return {world.token.pk: world.project.pk, world.f_token.pk: world.foreign.pk}.get(item["id"])
    raise AssertionError(key)


@pytest.mark.parametrize("endpoint", LISTS, ids=[e.id for e in LISTS])
def test_lists_never_show_another_projects_data(endpoint, world, client_for):
    response = client_for(world.stranger).get(endpoint.path(world.ids()))
    assert response.status_code == 200
    results = response.json()["results"]
    owners = [_project_of(item, endpoint.list_key, world) for item in results]
    # The stranger sees their own project's object (the token list: their own tokens only).
    assert world.foreign.pk in owners
    assert world.project.pk not in owners


FILTERABLE = [e for e in LISTS if e.list_key != "token" and e.route != "projects/"]


@pytest.mark.parametrize("endpoint", FILTERABLE, ids=[e.id for e in FILTERABLE])
def test_a_project_filter_on_a_foreign_project_returns_nothing(endpoint, world, client_for):
    stranger = client_for(world.stranger)
    own = stranger.get(endpoint.path(world.ids()), {"project": world.foreign.pk}).json()
    assert own["count"] >= 1
    foreign = stranger.get(endpoint.path(world.ids()), {"project": world.project.pk}).json()
    assert (foreign["count"], foreign["results"]) == (0, [])


@pytest.mark.parametrize("endpoint", WRITES, ids=[e.id for e in WRITES])
def test_a_viewer_cannot_write(endpoint, world, client_for):
    from control.models import Alert, AlertRule, DataSource, MetricPoint, Project, Run, Tag

    def snapshot():
        return (
            list(Project.objects.values_list("name", "description")),
            list(DataSource.objects.values_list("description")),
            sorted(Tag.objects.values_list("name", flat=True)),
            sorted(Run.objects.values_list("name", "status")),
            MetricPoint.objects.count(),
            list(AlertRule.objects.values_list("name", "threshold")),
            list(Alert.objects.values_list("state")),
            world.project.memberships.count(),
        )

    before = snapshot()
    ids = world.ids()
    response = send(client_for(world.viewer), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    body = assert_error(response, 403, code="permission_denied")
    if endpoint.route.endswith("members/"):
        assert body["message"] == "only an owner of the project can change its members"
    else:
        assert body["message"] == (
            f"you are a viewer of project {world.project.pk}; ask an owner for the member role"
        )
    assert snapshot() == before


READS = [e for e in SERVED if e.method == "get" and not e.personal and not e.project_write]


@pytest.mark.parametrize("endpoint", READS, ids=[e.id for e in READS])
def test_a_viewer_can_read(endpoint, world, client_for):
    response = client_for(world.viewer).get(endpoint.path(world.ids()))
    assert response.status_code == 200, response.content[:300]


def test_a_plain_member_cannot_change_members(world, client_for):
    response = client_for(world.member).post(
        API + f"projects/{world.project.pk}/members/", {"username": "newbie", "role": "owner"}, format="json"
    )
    assert_error(response, 403, message="only an owner of the project can change its members")
    assert not world.project.memberships.filter(user=world.newbie).exists()


@pytest.mark.parametrize(
    "endpoint",
    [e for e in ENDPOINTS if (e.method, e.route) != ("post", "runs/{run}/metrics/")],
    ids=[e.id for e in ENDPOINTS if (e.method, e.route) != ("post", "runs/{run}/metrics/")],
)
def test_a_run_scoped_token_is_refused_everywhere_else(endpoint, world, run_client_for):
    ids = world.ids()
    response = send(run_client_for(world.run), endpoint.method, endpoint.path(ids), endpoint.payload(ids))
    assert_error(response, 403, code="permission_denied", message=RUN_TOKEN_REFUSED)


def test_a_run_scoped_token_writes_metrics_of_its_own_run(world, run_client_for):
    from control.models import MetricPoint

    client = run_client_for(world.run)
    body = {"points": [{"step": 3, "key": "reward/final", "source": "geo_math", "value": 0.75}]}
    response = client.post(API + f"runs/{world.run.pk}/metrics/", body, format="json")
    assert response.status_code == 200, response.content
    assert response.json() == {"accepted": 1}
    assert MetricPoint.objects.get(run=world.run, step=3).value == 0.75


@pytest.mark.parametrize("other", ["same_project", "foreign", "missing"])
def test_a_run_scoped_token_cannot_write_another_runs_metrics(other, world, make_run, run_client_for):
    from control.models import MetricPoint

    target = {
        "same_project": lambda: make_run(world.project).pk,
        "foreign": lambda: world.f_run.pk,
        "missing": lambda: 987654,
    }[other]()
    before = MetricPoint.objects.count()
    response = run_client_for(world.run).post(
        API + f"runs/{target}/metrics/", {"points": [{"step": 1, "key": "a", "value": 1}]}, format="json"
    )
    assert_error(
        response, 403, code="permission_denied", message="this run-scoped token belongs to another run"
    )
    assert MetricPoint.objects.count() == before


def test_a_run_scoped_token_is_not_listed_and_cannot_be_revoked_through_the_api(world, client_for):
    from control.services.tokens import api_token_create

    run_token, _ = api_token_create(user=world.owner, name="job", run=world.run)
    client = client_for(world.owner)
    listed = [t["id"] for t in client.get(API + "tokens/").json()["results"]]
    assert run_token.pk not in listed and world.token.pk in listed
    assert_error(client.delete(API + f"tokens/{run_token.pk}/"), 404, code="not_found")


def test_a_revoked_token_stops_working_at_once(world, api_client):
    from control.services.tokens import api_token_create

    _, raw = api_token_create(user=world.owner, name="short-lived")
    token_id = _token_id(raw)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get(API + "projects/").status_code == 200
    assert api_client.delete(API + f"tokens/{token_id}/").status_code == 204
    assert_error(api_client.get(API + "projects/"), 401, message=BAD_TOKEN)


def _token_id(raw: str) -> int:
    from control.models import ApiToken
    from control.models.tokens import hash_token

    return ApiToken.objects.get(digest=hash_token(raw)).pk


def test_session_login_reaches_the_api(world, client):
    client.force_login(world.owner)
    response = client.get(API + "projects/")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()["results"]] == ["vision"]

"""The permission matrix: every API endpoint, page and websocket against every kind of caller.

Callers: anonymous; a member of another project; a site administrator who is not in the project;
the project's viewer, member and owner (its administrator); a run-scoped token of this run, of
another run of the project, and of a run that has ended; a revoked and an expired personal token.
Each route has an access rule (the RULES below), and each rule says what each caller gets.

Tables list the routes; a test compares each with what the URL configuration exposes, so a new
endpoint, page or websocket fails here until it has a row (and so an access rule).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import transaction

from tests.integration.control.helpers import send
from tests.integration.control.test_api_permissions import ENDPOINTS as API_BODIES

pytestmark = pytest.mark.django_db

API = "/api/v1/"
OK = "ok"  # the row's own success status

# Callers of the API: who they are is decided in ``callers`` below.
CALLERS = [
    "anonymous",
    "outsider",
    "site_admin",
    "viewer",
    "member",
    "owner",
    "run_token",
    "other_run_token",
    "ended_run_token",
    "revoked_token",
    "expired_token",
]
# What a caller without a valid project role gets whatever the rule: no credentials or a dead token is
# 401, a live run-scoped token is 403 everywhere but its own run's metrics.
REFUSED_ALWAYS = {
    "anonymous": 401,
    "ended_run_token": 401,
    "revoked_token": 401,
    "expired_token": 401,
    "run_token": 403,
    "other_run_token": 403,
}
PEOPLE = ["outsider", "site_admin", "viewer", "member", "owner"]


def _rule(**people: int | str) -> dict[str, int | str]:
    assert set(people) == set(PEOPLE), people
    return {**REFUSED_ALWAYS, **people}


RULES = {
    # Lists: anyone signed in, filtered to their own projects (test_api_permissions checks the filter).
    "list": _rule(outsider=OK, site_admin=OK, viewer=OK, member=OK, owner=OK),
    # Anyone signed in creates their own objects (projects, personal tokens).
    "open": _rule(outsider=OK, site_admin=OK, viewer=OK, member=OK, owner=OK),
    # Read a project's object: its members; to anyone else it does not exist.
    "read": _rule(outsider=404, site_admin=404, viewer=OK, member=OK, owner=OK),
    # Change a project's objects: owners and members; a viewer is told why not.
    "write": _rule(outsider=404, site_admin=404, viewer=403, member=OK, owner=OK),
    # Change who is in the project: owners only.
    "owner": _rule(outsider=404, site_admin=404, viewer=403, member=403, owner=OK),
    # An object of one user (a personal token, an upload): nobody else sees it.
    "personal": _rule(outsider=404, site_admin=404, viewer=404, member=404, owner=OK),
    # Platform-wide objects (compute targets) that site administrators manage.
    "staff": _rule(outsider=403, site_admin=OK, viewer=403, member=403, owner=403),
    # A run's metrics: its editors, and the run's own live token.
    "ingest": {
        **_rule(outsider=404, site_admin=404, viewer=403, member=OK, owner=OK),
        "run_token": OK,
        "other_run_token": 403,
    },
}


@dataclass(frozen=True)
class Row:
    method: str
    route: str  # relative to /api/v1/, placeholders filled from World.ids()
    rule: str
    ok: int  # what an allowed caller gets with the table's body
    but: tuple[tuple[str, int], ...] = ()  # (caller, status) where this row departs from its rule

    def expected(self, caller: str) -> int | str:
        return dict(self.but).get(caller, RULES[self.rule][caller])

    @property
    def id(self) -> str:
        return f"{self.method.upper()} {self.route}"


# ``ok`` is a 2xx where the world holds what the call needs; the rows that need data files, an upload
# or a Ray cluster get the 4xx that shows the permission check passed (the tests of those endpoints
# cover their success).
API_MATRIX = [
    Row("get", "projects/", "list", 200),
    Row("post", "projects/", "open", 201),
    Row("get", "projects/{project}/", "read", 200),
    Row("patch", "projects/{project}/", "write", 200),
    Row("get", "projects/{project}/members/", "read", 200),
    Row("post", "projects/{project}/members/", "owner", 201),
    Row("get", "projects/{project}/upload-reports/{report}/", "read", 404),  # no such report
    Row("get", "datasets/", "list", 200),
    # The upload has no bytes yet; and it is the owner's: a member may not commit it.
    Row("post", "datasets/", "write", 400, but=(("member", 404),)),
    Row("get", "datasets/{dataset}/", "read", 200),
    Row("post", "uploads/", "write", 201),
    Row("get", "uploads/{upload}/", "personal", 200),
    Row("put", "uploads/{upload}/", "personal", 200),
    Row("delete", "uploads/{upload}/", "personal", 204),
    Row("get", "data-sources/", "list", 200),
    Row("get", "data-sources/{source}/", "read", 200),
    Row("patch", "data-sources/{source}/", "write", 200),
    Row("get", "data-sources/{source}/samples/", "read", 200),
    # The source has no data files: no sample 0.
    Row("get", "data-sources/{source}/samples/{split}/{index}/images/{image}/", "read", 404),
    Row("post", "data-sources/{source}/samples/{split}/{index}/score/", "read", 404),
    Row("get", "tags/", "list", 200),
    Row("post", "tags/", "write", 201),
    Row("get", "tags/{tag}/", "read", 200),
    Row("delete", "tags/{tag}/", "write", 204),
    Row("get", "runs/", "list", 200),
    Row("post", "runs/", "write", 201),
    Row("get", "runs/{run}/", "read", 200),
    Row("patch", "runs/{run}/", "write", 200),
    Row("post", "runs/{run}/cancel/", "write", 200),
    Row("post", "runs/{run}/launch/", "write", 400),  # the source has no data files
    Row("post", "runs/{run}/resume/", "write", 409),  # a pending run has nothing to resume
    Row("post", "runs/{run}/clone/", "write", 201),
    Row("get", "runs/{run}/events/", "read", 200),
    Row("get", "runs/{run}/tokens/", "write", 200),
    Row("delete", "runs/{run}/tokens/{run_token}/", "write", 204),
    Row("get", "runs/{run}/logs/", "read", 200),
    Row("get", "runs/{run}/artifacts/", "read", 200),
    Row("get", "runs/{run}/artifacts/{artifact}/download/", "read", 404),  # no such artifact
    Row("get", "runs/{run}/metrics/", "read", 200),
    Row("post", "runs/{run}/metrics/", "ingest", 200),
    Row("get", "runs/{run}/series/", "read", 400),  # keys= is required
    Row("get", "series/", "list", 400),  # runs= and keys= are required
    Row("get", "alert-rules/", "list", 200),
    Row("post", "alert-rules/", "write", 201),
    Row("post", "alert-rules/defaults/?project={project}", "write", 200),
    Row("get", "alert-rules/{rule}/", "read", 200),
    Row("patch", "alert-rules/{rule}/", "write", 200),
    Row("delete", "alert-rules/{rule}/", "write", 204),
    Row("get", "alerts/", "list", 200),
    Row("post", "alerts/{alert}/acknowledge/", "write", 200),
    Row("post", "alerts/{alert}/resolve/", "write", 200),
    Row("get", "notification-channels/", "list", 200),
    Row("post", "notification-channels/", "write", 201),
    Row("get", "notification-channels/{channel}/", "read", 200),
    Row("patch", "notification-channels/{channel}/", "write", 200),
    Row("delete", "notification-channels/{channel}/", "write", 204),
    Row("post", "notification-channels/{channel}/test/", "write", 202),
    Row("get", "notification-channels/{channel}/deliveries/", "read", 200),
    Row("get", "tokens/", "list", 200),
    Row("post", "tokens/", "open", 201),
    Row("delete", "tokens/{token}/", "personal", 204),
    Row("get", "compute-targets/", "list", 200),
    Row("post", "compute-targets/", "staff", 201),
    Row("get", "compute-targets/{target}/", "list", 200),
    Row("patch", "compute-targets/{target}/", "staff", 200),
    Row("delete", "compute-targets/{target}/", "staff", 409),  # the local target stays
]
BODIES = {(e.method, e.route): e.body for e in API_BODIES}
BODIES[("post", "compute-targets/")] = lambda ids: {"name": "lab", "address": "http://ray-head:8265"}
BODIES[("patch", "compute-targets/{target}/")] = lambda ids: {"description": "the head of ./triune up"}


def _route_key(route: str) -> str:
    """A route with its placeholders blanked and without its query string."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", route.split("?")[0])


def _exposed(patterns, prefix: str = "") -> set[tuple[str, str]]:
    """(method, route) of every view under ``patterns``, includes followed."""
    from django.urls import URLPattern, URLResolver

    found = set()
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found |= _exposed(pattern.url_patterns, route)
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "view_class", None)
            if view is None:
                found.add(("*", _route_key(route)))
            else:
                methods = {
                    m for m in view.http_method_names if m not in ("options", "head") and hasattr(view, m)
                }
                found |= {(m, _route_key(route)) for m in methods}
    return found


def test_the_api_matrix_covers_every_route_and_method():
    from control.api.urls import urlpatterns

    tabled = {(r.method, _route_key(r.route)) for r in API_MATRIX}
    exposed = _exposed(urlpatterns)
    assert exposed - tabled == set(), "API routes without a row in API_MATRIX: add one with its rule"
    assert tabled - exposed == set(), "API_MATRIX lists routes that do not exist"
    assert len(tabled) == len(API_MATRIX), "a route is listed twice"


@pytest.fixture
def callers(world, make_run, make_user, api_client):
    """An API client for each caller of CALLERS (a fresh token each, or none)."""
    from django.utils import timezone
    from rest_framework.test import APIClient

    from control.models import Run
    from control.services.tokens import api_token_create, api_token_revoke

    admin = make_user("root", is_staff=True, is_superuser=True)
    sibling = make_run(world.project, user=world.owner, sources=[world.source])
    ended = make_run(world.project, user=world.owner, sources=[world.source])
    Run.objects.filter(pk=ended.pk).update(status="succeeded")
    revoked, revoked_raw = api_token_create(user=world.owner, name="revoked")
    api_token_revoke(token=revoked)
    _, expired_raw = api_token_create(
        user=world.owner, name="expired", expires_at=timezone.now() - timedelta(seconds=1)
    )
    raws = {
        "outsider": api_token_create(user=world.stranger, name="t")[1],
        "site_admin": api_token_create(user=admin, name="t")[1],
        "viewer": api_token_create(user=world.viewer, name="t")[1],
        "member": api_token_create(user=world.member, name="t")[1],
        "owner": api_token_create(user=world.owner, name="t")[1],
        "run_token": api_token_create(user=world.owner, name="job", run=world.run)[1],
        "other_run_token": api_token_create(user=world.owner, name="job", run=sibling)[1],
        "ended_run_token": api_token_create(user=world.owner, name="job", run=ended)[1],
        "revoked_token": revoked_raw,
        "expired_token": expired_raw,
    }
    clients = {"anonymous": api_client}
    for name, raw in raws.items():
        clients[name] = APIClient()
        clients[name].credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert list(clients) == ["anonymous", *raws] and set(clients) == set(CALLERS)
    return clients


# How a 404 says "not yours" without saying whether the object exists.
REFUSAL_WORDS = ("not a member", "not in one of your projects", "is not yours")


def _verdict(response, expected: int | str, ok: int) -> str | None:
    """Why ``response`` is not what ``expected`` says, or None when it is."""
    want = ok if expected == OK else expected
    if response.status_code != want:
        return f"{response.status_code} (expected {want}): {response.content[:200]!r}"
    if expected == 404:
        # The refusal of a non-member: the same answer as for an object that does not exist.
        message = response.json()["message"]
        if not any(words in message for words in REFUSAL_WORDS):
            return f"404 without the membership wording: {message!r}"
    if expected == OK and ok == 404 and "not a member" in response.content.decode():
        return "an allowed caller got the refusal of a non-member"
    return None


@pytest.mark.parametrize("row", API_MATRIX, ids=[r.id for r in API_MATRIX])
def test_each_caller_gets_exactly_what_the_rule_says(row, world, callers):
    ids = world.ids()
    path = API + row.route.format(**ids)
    body = BODIES.get((row.method, row.route))
    wrong = {}
    for name in CALLERS:
        # Each call in a savepoint rolled back after it: every caller meets the same world.
        with transaction.atomic():
            response = send(callers[name], row.method, path, body(ids) if callable(body) else None)
            transaction.set_rollback(True)
        problem = _verdict(response, row.expected(name), row.ok)
        if problem:
            wrong[name] = problem
    assert wrong == {}


# Pages sign in with a session; a bearer token is not a way in (it is ignored, as if anonymous).
PAGE_CALLERS = ["anonymous", "bearer_token", "run_token", *PEOPLE]
LOGIN = "login"  # a redirect to the login page, which sends the caller back after signing in
TO_LOGIN = {"anonymous": LOGIN, "bearer_token": LOGIN, "run_token": LOGIN}


def _page_rule(**people: int | str) -> dict[str, int | str]:
    assert set(people) == set(PEOPLE), people
    return {**TO_LOGIN, **people}


PAGE_RULES = {
    "public": dict.fromkeys(PAGE_CALLERS, OK),
    "signed_in": _page_rule(outsider=OK, site_admin=OK, viewer=OK, member=OK, owner=OK),
    "read": _page_rule(outsider=404, site_admin=404, viewer=OK, member=OK, owner=OK),
    "write": _page_rule(outsider=404, site_admin=404, viewer=403, member=OK, owner=OK),
    "personal": _page_rule(outsider=404, site_admin=404, viewer=404, member=404, owner=OK),
    # Django's admin: its own login page for everyone but site administrators.
    "admin": {
        **dict.fromkeys(PAGE_CALLERS, "admin_login"),
        "site_admin": OK,
    },
}


@dataclass(frozen=True)
class Page:
    method: str
    route: str  # relative to /, placeholders filled from World.ids()
    rule: str
    ok: int
    body: dict | None = None
    but: tuple[tuple[str, int], ...] = ()  # (caller, status) where this page departs from its rule

    def expected(self, caller: str) -> int | str:
        return dict(self.but).get(caller, PAGE_RULES[self.rule][caller])

    @property
    def id(self) -> str:
        return f"{self.method.upper()} /{self.route}"


# A form sent with what the table gives answers 302 (done) or 200/400 (the form again, with its
# errors): either shows the caller got past the permission check.
PAGES = [
    Page("get", "", "signed_in", 200),
    Page("get", "login/", "public", 200),
    Page("post", "logout/", "public", 302),
    Page("get", "healthz", "public", 200),
    Page("get", "api/schema/", "public", 200),
    Page("get", "api/docs/", "public", 200),
    Page("get", "admin/", "admin", 200),
    Page("get", "projects/new/", "signed_in", 302),  # the form is on the home page
    Page("post", "projects/new/", "signed_in", 302, {"name": "fresh"}),
    Page("get", "projects/{project}/", "read", 200),
    Page("get", "projects/{project}/datasets/", "read", 200),
    # A viewer sees the upload page without its form: the uploads API refuses viewers.
    Page("get", "projects/{project}/datasets/upload/", "read", 200),
    Page("get", "projects/{project}/sources/", "read", 200),
    Page("get", "sources/{source}/", "read", 200),
    Page("post", "sources/{source}/edit/", "write", 302, {"description": "d"}),
    Page("get", "runs/{run}/", "read", 200),
    Page("get", "projects/{project}/runs/", "read", 200),
    Page("get", "projects/{project}/runs/compare/", "read", 302),  # no runs= chosen: back to the list
    Page("get", "projects/{project}/runs/new/", "write", 200),
    Page("post", "projects/{project}/runs/new/", "write", 400, {}),
    Page("get", "runs/{run}/clone/", "write", 200),
    Page("post", "runs/{run}/clone/", "write", 400, {}),
    Page("get", "projects/{project}/alerts/", "read", 200),
    Page("post", "projects/{project}/alerts/{alert}/acknowledge/", "write", 302),
    Page("post", "projects/{project}/alerts/{alert}/resolve/", "write", 302),
    Page("get", "projects/{project}/alert-rules/", "read", 200),
    Page("get", "projects/{project}/alert-rules/new/", "write", 200),
    Page("post", "projects/{project}/alert-rules/new/", "write", 400, {}),
    Page("post", "projects/{project}/alert-rules/restore/", "write", 302),
    Page("get", "projects/{project}/alert-rules/{rule}/", "write", 200),
    Page("post", "projects/{project}/alert-rules/{rule}/", "write", 400, {}),
    Page("post", "projects/{project}/alert-rules/{rule}/enabled/", "write", 302, {"enabled": "0"}),
    Page("post", "projects/{project}/alert-rules/{rule}/delete/", "write", 302),
    Page("get", "projects/{project}/channels/", "read", 200),
    Page("post", "projects/{project}/channels/", "write", 302, {}),  # no form id: back to the page
    Page("post", "projects/{project}/channels/{channel}/test/", "write", 302),
    Page("post", "projects/{project}/channels/{channel}/delete/", "write", 302),
    Page("get", "tokens/", "signed_in", 200),
    Page("post", "tokens/", "signed_in", 302, {}),  # no form id: back to the page
    Page("post", "tokens/{token}/revoke/", "personal", 302),
]
# The routes served by pages: everything but the API (the matrix above) and the admin's own pages.
NOT_PAGES = ("api/v1/", "admin/")


def test_the_page_matrix_covers_every_page():
    from control.urls import urlpatterns

    exposed = {route for _, route in _exposed(urlpatterns) if not route.startswith(NOT_PAGES)}
    exposed.add("admin/")
    tabled = {_route_key(p.route) for p in PAGES}
    assert exposed - tabled == set(), "pages without a row in PAGES: add one with its rule"
    assert tabled - exposed == set(), "PAGES lists routes that do not exist"


@pytest.fixture
def page_callers(world, make_user):
    """A browser client for each caller of PAGE_CALLERS."""
    from django.test import Client

    from control.services.tokens import api_token_create

    admin = make_user("root", is_staff=True, is_superuser=True)
    people = {"outsider": world.stranger, "site_admin": admin, "viewer": world.viewer}
    people.update(member=world.member, owner=world.owner)
    clients = {"anonymous": Client()}
    for name, run in (("bearer_token", None), ("run_token", world.run)):
        raw = api_token_create(user=world.owner, name=name, run=run)[1]
        clients[name] = Client(headers={"Authorization": f"Bearer {raw}"})
    for name, person in people.items():
        clients[name] = Client()
        clients[name].force_login(person)
    assert set(clients) == set(PAGE_CALLERS)
    return clients


def _page_verdict(response, expected: int | str, ok: int) -> str | None:
    if expected in (LOGIN, "admin_login"):
        login = "/login/" if expected == LOGIN else "/admin/login/"
        location = response.get("Location", "")
        if response.status_code != 302 or not location.startswith(login):
            return f"{response.status_code} {location!r} (expected a redirect to {login})"
        return None
    want = ok if expected == OK else expected
    if response.status_code != want:
        return f"{response.status_code} (expected {want})"
    return None


@pytest.mark.parametrize("page", PAGES, ids=[p.id for p in PAGES])
def test_each_caller_gets_exactly_what_the_page_rule_says(page, world, page_callers):
    path = "/" + page.route.format(**world.ids())
    wrong = {}
    for name in PAGE_CALLERS:
        with transaction.atomic():
            call = getattr(page_callers[name], page.method)
            response = call(path, page.body) if page.method == "post" else call(path)
            transaction.set_rollback(True)
        problem = _page_verdict(response, page.expected(name), page.ok)
        if problem:
            wrong[name] = problem
    assert wrong == {}


# Websockets authenticate like pages (the session cookie); a refused socket is closed with 4401 (not
# signed in) or 4404 (no such run among yours) before it is accepted.
ACCEPTED = "accepted"
SOCKET_RULES = {
    "watch": {
        "anonymous": 4401,
        "bearer_token": 4401,
        "run_token": 4401,
        "outsider": 4404,
        "site_admin": 4404,
        "viewer": ACCEPTED,
        "member": ACCEPTED,
        "owner": ACCEPTED,
    }
}
SOCKETS = {"ws/runs/{run}/": "watch"}


def test_the_socket_matrix_covers_every_websocket():
    from webui.routing import websocket_urlpatterns

    exposed = {_route_key(str(p.pattern)) for p in websocket_urlpatterns}
    assert exposed == {_route_key(route) for route in SOCKETS}


@pytest.fixture
def channel_layer(settings):
    """A Redis channel layer of its own prefix, so other test runs on the same Redis never cross."""
    import uuid

    from channels.layers import get_channel_layer

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [settings.REDIS_URL], "prefix": f"test-{uuid.uuid4().hex}", "expiry": 30},
        }
    }
    layer = get_channel_layer()
    yield layer
    async_to_sync(layer.flush)()
    async_to_sync(layer.close_pools)()


def _socket_headers(caller: str, run, owner, people: dict) -> list[tuple[bytes, bytes]]:
    """The headers a browser (or a script holding a token) sends to open the run's socket."""
    from django.test import Client

    from control.services.tokens import api_token_create

    headers = [(b"origin", b"http://testserver")]
    if caller in ("bearer_token", "run_token"):
        raw = api_token_create(user=owner, name=caller, run=run if caller == "run_token" else None)[1]
        headers.append((b"authorization", f"Bearer {raw}".encode()))
    elif caller != "anonymous":
        client = Client()
        client.force_login(people[caller])
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return headers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", list(SOCKETS))
@pytest.mark.parametrize("caller", list(SOCKET_RULES["watch"]))
def test_each_caller_gets_exactly_what_the_socket_rule_says(
    caller, route, channel_layer, project, run, user, viewer, make_user, add_member
):
    from channels.testing import WebsocketCommunicator

    from control.asgi import application

    member, stranger = make_user("mia"), make_user("mallory")
    add_member(project, member, "member")
    people = {
        "outsider": stranger,
        "site_admin": make_user("root", is_staff=True, is_superuser=True),
        "viewer": viewer,
        "member": member,
        "owner": user,
    }
    headers = _socket_headers(caller, run, user, people)

    async def connect():
        communicator = WebsocketCommunicator(application, "/" + route.format(run=run.pk), headers=headers)
        try:
            return await communicator.connect(timeout=10)
        finally:
            await communicator.disconnect()

    connected, code = async_to_sync(connect)()
    expected = SOCKET_RULES[SOCKETS[route]][caller]
    assert (connected, code) == ((True, None) if expected == ACCEPTED else (False, expected))

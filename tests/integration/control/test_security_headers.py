"""Security headers on every page, API docs served from this host, error pages that show no internals."""

from __future__ import annotations

import re

import pytest
from django.http import HttpResponse
from django.urls import path

pytestmark = pytest.mark.django_db

DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "connect-src": "'self'",
    "style-src": "'self'",
    "style-src-attr": "'unsafe-inline'",
}


def _policy(response) -> dict[str, str]:
    header = response.headers.get("Content-Security-Policy", "")
    return {part.split()[0]: " ".join(part.split()[1:]) for part in header.split(";") if part.strip()}


def assert_secure_headers(response) -> None:
    policy = _policy(response)
    for directive, value in DIRECTIVES.items():
        assert policy.get(directive) == value, (response.request["PATH_INFO"], directive, policy)
    assert "'unsafe-inline'" not in policy.get("script-src", "")
    assert "'unsafe-eval'" not in policy.get("script-src", "")
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"


@pytest.fixture
def pages(user, project, make_source, make_run, make_rule):
    source = make_source(project, "synth_math")
    run = make_run(project, user=user, sources=[source])
    other = make_run(project, user=user, sources=[source])
    rule = make_rule(project)
    return [
        "/",
        f"/projects/{project.pk}/",
        f"/projects/{project.pk}/datasets/",
        f"/projects/{project.pk}/datasets/upload/",
        f"/projects/{project.pk}/sources/",
        f"/sources/{source.pk}/",
        f"/runs/{run.pk}/",
        f"/projects/{project.pk}/runs/",
        f"/runs/{run.pk}/?overlay={other.pk}",
        f"/projects/{project.pk}/runs/new/",
        f"/runs/{run.pk}/clone/",
        f"/projects/{project.pk}/alerts/",
        f"/projects/{project.pk}/alert-rules/",
        f"/projects/{project.pk}/alert-rules/new/",
        f"/projects/{project.pk}/alert-rules/{rule.pk}/",
        f"/projects/{project.pk}/channels/",
        "/tokens/",
        "/api/docs/",
        "/api/docs/?script=",
        "/api/schema/",
        f"/api/v1/projects/{project.pk}/",
    ]


def test_every_page_carries_the_security_headers(client, user, pages):
    client.force_login(user)
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
        assert_secure_headers(response)


@pytest.mark.parametrize(
    "url", ["/login/", "/", "/healthz", "/no/such/page/", "/api/v1/no-such/", "/api/docs/", "/admin/login/"]
)
def test_anonymous_answers_and_errors_carry_the_headers_too(client, url):
    assert_secure_headers(client.get(url))


def test_api_docs_load_nothing_from_another_host(client, user):
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    script = client.get("/api/docs/?script=").content.decode()
    references = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert references, page
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
    assert "cdn" not in page.lower() and "@latest" not in page
    assert "<script>" not in page and "<style>" not in page  # no inline code: the CSP allows none
    assert not re.search(r"https?://", page + script)
    # The assets are served from here.
    for reference in references:
        if reference.startswith("/static/"):
            assert client.get(reference).status_code == 200, reference


def test_the_404_page_shows_no_internals(client, user, project):
    client.force_login(user)
    response = client.get("/no/such/page/")
    assert response.status_code == 404
    body = response.content.decode()
    for internal in ("URLResolver", "URLPattern", "tried", "control.", "webui.", ".py", "urls"):
        assert internal not in body, internal
    assert "There is no page at this address." in body
    # A view's own message is kept: it names what the user asked for.
    missing = client.get("/projects/987654/")
    assert missing.status_code == 404
    assert "987654" in missing.content.decode()
    assert "URLResolver" not in missing.content.decode()


def _boom(request):
    raise RuntimeError("secret internals: /srv/triune/var/storage and a password")


def _fine(request):
    return HttpResponse("ok")


urlpatterns = [path("boom/", _boom), path("fine/", _fine)]
handler404 = "webui.views.not_found"
handler500 = "webui.views.server_error"


def test_the_500_page_shows_no_internals(client, settings):
    settings.ROOT_URLCONF = __name__
    client.raise_request_exception = False
    response = client.get("/boom/")
    assert response.status_code == 500
    body = response.content.decode()
    assert "Server error" in body
    assert "secret" not in body and "RuntimeError" not in body and "Traceback" not in body
    assert_secure_headers(response)


@pytest.mark.parametrize(
    "url",
    [
        "/no/such/page/%00",
        "/projects/99999999999999999999999/",
        "/%3Cscript%3Ealert(1)%3C/script%3E/",
        "/api/docs/?script=&lang=%00",
        "/api/docs/?lang=<script>",
        "/" + "a/" * 500,
    ],
)
def test_hostile_addresses_answer_without_a_server_error(client, user, url):
    client.force_login(user)
    response = client.get(url)
    assert response.status_code < 500, (url, response.status_code)
    assert_secure_headers(response)
    assert "<script>alert" not in response.content.decode()

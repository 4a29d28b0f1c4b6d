"""The tokens and alerts pages with Django's test client: access, the token shown once, form errors,
revoking, alert filters and pages, acknowledging and resolving, viewers, escaping."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from control.models import Alert, ApiToken

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script>'
HOSTILE_ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


@pytest.fixture
def web(client, user):
    """The test client logged in as ``user`` (the owner of ``project``)."""
    client.force_login(user)
    return client


def _form_id(response) -> str:
    found = re.search(r'name="form_id" value="([^"]+)"', response.content.decode())
    assert found, "the create form carries a one-time id"
    return found.group(1)


def _create(web, name: str, expires_at: str = "", form_id: str | None = None):
    form_id = form_id or _form_id(web.get("/tokens/"))
    return web.post("/tokens/", {"name": name, "expires_at": expires_at, "form_id": form_id})


def _raw(response) -> str:
    found = re.search(r'id="new-token" type="text" readonly value="(tri_[^"]+)"', response.content.decode())
    assert found, "the answer to the creating POST shows the raw token"
    return found.group(1)


def _listed(response, attribute: str) -> list[str]:
    """Ids of the rows of the page's table (``data-token`` or ``data-alert``), in page order."""
    return re.findall(rf'<tr {attribute}="(\d+)">', response.content.decode())


def _alert(rule, run, *, source: str = "", state: str = "firing", message: str = "", minutes_ago: int = 0):
    alert = Alert.objects.create(
        rule=rule,
        run=run,
        source=source,
        state=state,
        step=3,
        value=0.1,
        message=message or f"{rule.name} fired",
    )
    Alert.objects.filter(pk=alert.pk).update(fired_at=timezone.now() - timedelta(minutes=minutes_ago))
    return alert


# ----------------------------------------------------------------------------------------- access


def test_anonymous_is_sent_to_login_and_changes_nothing(client, user, project, run, make_rule):
    from control.services.tokens import api_token_create

    token, _ = api_token_create(user=user, name="t")
    alert = _alert(make_rule(project), run)
    for url in ["/tokens/", f"/projects/{project.pk}/alerts/"]:
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/login/?next={url}"
    posts = [
        ("/tokens/", {"name": "sneaky"}),
        (f"/tokens/{token.pk}/revoke/", {}),
        (f"/projects/{project.pk}/alerts/{alert.pk}/acknowledge/", {}),
        (f"/projects/{project.pk}/alerts/{alert.pk}/resolve/", {}),
    ]
    for url, data in posts:
        response = client.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/"), url
    assert list(ApiToken.objects.values_list("name", "revoked_at")) == [("t", None)]
    assert Alert.objects.get(pk=alert.pk).state == "firing"


def test_nav_links_tokens_always_and_alerts_with_a_project(web, project):
    home = web.get("/").content.decode()
    assert 'href="/tokens/"' in home
    assert "/alerts/" not in home
    page = web.get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/projects/{project.pk}/alerts/"' in page
    assert 'href="/tokens/"' in page


def test_action_urls_answer_post_only(web, user, project, run, make_rule):
    from control.services.tokens import api_token_create

    token, _ = api_token_create(user=user, name="t")
    alert = _alert(make_rule(project), run)
    assert web.get(f"/tokens/{token.pk}/revoke/").status_code == 405
    assert web.get(f"/projects/{project.pk}/alerts/{alert.pk}/acknowledge/").status_code == 405
    assert web.get(f"/projects/{project.pk}/alerts/{alert.pk}/resolve/").status_code == 405
    assert web.post(f"/projects/{project.pk}/alerts/").status_code == 405


# ----------------------------------------------------------------------------------------- tokens


def test_created_token_is_shown_once_and_never_again(web, user):
    response = _create(web, "laptop scripts")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    raw = _raw(response)
    assert html.count(raw) == 1
    assert "Copy it now: it will not be shown again." in html
    assert 'id="copy-token"' in html
    token = ApiToken.objects.get(user=user)
    assert (token.name, token.run_id, token.expires_at, token.revoked_at) == (
        "laptop scripts",
        None,
        None,
        None,
    )
    assert raw.startswith(f"tri_{token.prefix}")
    # The new token is listed at once, by its prefix only.
    assert _listed(response, "data-token") == [str(token.pk)]
    assert f"tri_{token.prefix}…" in html

    reloaded = web.get("/tokens/")
    assert raw not in reloaded.content.decode()
    assert 'id="new-token"' not in reloaded.content.decode()
    assert _listed(reloaded, "data-token") == [str(token.pk)]


def test_resending_the_create_form_creates_nothing_and_shows_no_token(web, user):
    form_id = _form_id(web.get("/tokens/"))
    first = _create(web, "once", form_id=form_id)
    raw = _raw(first)
    # What a browser does when the answer is reloaded: the same POST again.
    again = _create(web, "once", form_id=form_id)
    assert again.status_code == 302
    assert again["Location"] == "/tokens/"
    assert ApiToken.objects.filter(user=user).count() == 1
    page = web.get("/tokens/").content.decode()
    assert raw not in page
    assert "This form was already sent (or has expired); no token was created." in page
    forged = web.post("/tokens/", {"name": "no id"})
    assert forged.status_code == 302
    assert ApiToken.objects.filter(user=user).count() == 1


def test_token_with_an_expiry_in_the_future(web, user):
    response = _create(web, "nightly", expires_at="2999-01-02T03:04")
    assert response.status_code == 200
    token = ApiToken.objects.get(user=user)
    assert token.expires_at.isoformat() == "2999-01-02T03:04:00+00:00"
    assert "2999-01-02 03:04" in response.content.decode()


@pytest.mark.parametrize(
    ("name", "expires_at", "field", "error"),
    [
        ("old", "2001-01-01T00:00", "expires_at", "must be in the future; it is now"),
        ("garbled", "next tuesday", "expires_at", "Enter a valid date/time."),
        ("", "", "name", "This field is required."),
        ("n" * 101, "", "name", "Ensure this value has at most 100 characters (it has 101)."),
    ],
)
def test_bad_input_is_explained_beside_its_field_and_creates_nothing(
    web, user, name, expires_at, field, error
):
    response = _create(web, name, expires_at=expires_at)
    assert response.status_code == 200
    html = response.content.decode()
    beside = re.search(rf'<span class="field-error" id="error-{field}">([^<]*)</span>', html)
    assert beside, html
    assert beside.group(1).startswith(error)
    assert f'aria-describedby="error-{field}"' in html or f' error-{field}"' in html
    assert 'id="new-token"' not in html
    assert not ApiToken.objects.filter(user=user).exists()
    # The input is kept, and the form can be sent again once corrected.
    assert f'value="{name}"' in html
    assert _create(web, "fixed", form_id=_form_id(response)).status_code == 200
    assert ApiToken.objects.filter(user=user).count() == 1


def test_hostile_token_names_are_escaped(web):
    created = _create(web, HOSTILE).content.decode()
    assert HOSTILE not in created
    assert f"Token {HOSTILE_ESCAPED} created" in created
    listed = web.get("/tokens/").content.decode()
    assert HOSTILE not in listed
    assert f'<td class="name text" data-label="Name">{HOSTILE_ESCAPED}</td>' in listed


def test_only_own_personal_tokens_are_listed(web, user, other_user, run):
    from control.services.tokens import api_token_create

    mine, _ = api_token_create(user=user, name="mine")
    api_token_create(user=user, name="job token", run=run)
    api_token_create(user=other_user, name="not mine")
    page = web.get("/tokens/")
    assert _listed(page, "data-token") == [str(mine.pk)]
    assert "job token" not in page.content.decode()
    assert "not mine" not in page.content.decode()


def test_revoke_ends_the_token(web, user, api_client):
    created = _create(web, "ci")
    raw = _raw(created)
    token = ApiToken.objects.get(user=user)
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert api_client.get("/api/v1/projects/").status_code == 200

    response = web.post(f"/tokens/{token.pk}/revoke/")
    assert response.status_code == 302
    assert response["Location"] == "/tokens/"
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert api_client.get("/api/v1/projects/").status_code == 401
    page = web.get("/tokens/").content.decode()
    assert f"Revoked token ci (tri_{token.prefix}…); it no longer authenticates." in page
    assert '<span class="status revoked">revoked</span>' in page
    assert f'action="/tokens/{token.pk}/revoke/"' not in page


def test_other_users_and_run_tokens_cannot_be_revoked(web, user, other_user, run):
    from control.services.tokens import api_token_create

    theirs, _ = api_token_create(user=other_user, name="theirs")
    job, _ = api_token_create(user=user, name="job", run=run)
    for token in (theirs, job):
        response = web.post(f"/tokens/{token.pk}/revoke/")
        assert response.status_code == 404
        assert f"token {token.pk} does not exist or is not yours" in response.content.decode()
    assert web.post("/tokens/999999/revoke/").status_code == 404
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


def test_expired_tokens_are_marked(web, user):
    from control.services.tokens import api_token_create

    token, _ = api_token_create(user=user, name="short")
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    page = web.get("/tokens/").content.decode()
    assert '<span class="status expired">expired</span>' in page


# ----------------------------------------------------------------------------------------- alerts


@pytest.fixture
def alerts(project, make_run, make_rule):
    """Four alerts of ``project`` over two runs, fired 40, 30, 20 and 10 minutes ago."""
    run_a = make_run(project, name="run a")
    run_b = make_run(project, name="run b")
    low = make_rule(project, name="accuracy low")
    nan = make_rule(project, name="loss not finite", key="actor/pg_loss", condition="not_finite")
    return {
        "a_low_old": _alert(low, run_a, source="synth_math", state="resolved", minutes_ago=40),
        "b_nan": _alert(nan, run_b, state="acknowledged", minutes_ago=30),
        "a_low": _alert(low, run_a, source="synth_math", minutes_ago=20),
        "b_low": _alert(low, run_b, source="synth_ocr", minutes_ago=10),
        "run_a": run_a,
        "run_b": run_b,
    }


def _ids(*alerts) -> list[str]:
    return [str(a.pk) for a in alerts]


def test_alerts_are_listed_newest_first_with_their_details(web, project, alerts):
    response = web.get(f"/projects/{project.pk}/alerts/")
    assert response.status_code == 200
    a = alerts
    assert _listed(response, "data-alert") == _ids(a["b_low"], a["a_low"], a["b_nan"], a["a_low_old"])
    html = response.content.decode()
    row = html[html.index(f'<tr data-alert="{a["b_low"].pk}">') :]
    row = row[: row.index("</tr>")]
    assert f'<a href="/runs/{a["run_b"].pk}/">run b</a>' in row
    assert '<td class="text" data-label="Source">synth_ocr</td>' in row
    assert '<td class="text" data-label="Rule">accuracy low</td>' in row
    assert '<span class="status firing">Firing</span>' in row
    assert "accuracy low fired" in row
    assert f'action="/projects/{project.pk}/alerts/{a["b_low"].pk}/acknowledge/"' in row
    assert f'action="/projects/{project.pk}/alerts/{a["b_low"].pk}/resolve/"' in row
    # An acknowledged alert can still be resolved; a resolved one has no button.
    assert f"/alerts/{a['b_nan'].pk}/acknowledge/" not in html
    assert f"/alerts/{a['b_nan'].pk}/resolve/" in html
    assert f"/alerts/{a['a_low_old'].pk}/resolve/" not in html


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("state=firing", ["b_low", "a_low"]),
        ("state=acknowledged", ["b_nan"]),
        ("state=resolved", ["a_low_old"]),
        ("run={run_a}", ["a_low", "a_low_old"]),
        ("run={run_b}&state=firing", ["b_low"]),
        ("run={run_b}&state=resolved", []),
    ],
)
def test_alerts_filters(web, project, alerts, query, expected):
    url = f"/projects/{project.pk}/alerts/?" + query.format(
        run_a=alerts["run_a"].pk, run_b=alerts["run_b"].pk
    )
    response = web.get(url)
    assert _listed(response, "data-alert") == _ids(*(alerts[name] for name in expected))
    if not expected:
        assert "No alert matches these filters." in response.content.decode()


def test_a_filter_that_does_not_validate_is_explained_and_not_applied(web, project, alerts):
    response = web.get(f"/projects/{project.pk}/alerts/?state=exploded&run=abc")
    assert len(_listed(response, "data-alert")) == 4
    html = response.content.decode()
    assert "state: Select a valid choice. exploded is not one of the available choices." in html
    assert "run: Enter a whole number." in html


def test_another_projects_run_filter_shows_nothing_of_it(
    web, project, alerts, make_user, make_project, make_run, make_rule
):
    stranger = make_user("sam")
    foreign = make_project(stranger, "foreign")
    foreign_run = make_run(foreign, user=stranger, name="foreign run")
    hidden = _alert(make_rule(foreign, name="foreign rule"), foreign_run)
    everything = web.get(f"/projects/{project.pk}/alerts/")
    assert str(hidden.pk) not in _listed(everything, "data-alert")
    assert "foreign rule" not in everything.content.decode()
    assert _listed(web.get(f"/projects/{project.pk}/alerts/?run={foreign_run.pk}"), "data-alert") == []


def test_foreign_or_missing_project_is_404(web, make_user, make_project, make_run, make_rule):
    stranger = make_user("sam")
    foreign = make_project(stranger, "foreign")
    alert = _alert(make_rule(foreign), make_run(foreign, user=stranger))
    for url in [f"/projects/{foreign.pk}/alerts/", "/projects/999999/alerts/"]:
        response = web.get(url)
        assert response.status_code == 404
        assert "does not exist or you are not a member of it" in response.content.decode()
    for action in ("acknowledge", "resolve"):
        assert web.post(f"/projects/{foreign.pk}/alerts/{alert.pk}/{action}/").status_code == 404
    assert Alert.objects.get(pk=alert.pk).state == "firing"


def test_an_alert_of_another_project_cannot_be_changed_through_ones_own(
    web, project, make_project, user, make_run, make_rule
):
    mine_too = make_project(user, "second")
    alert = _alert(make_rule(mine_too), make_run(mine_too))
    response = web.post(f"/projects/{project.pk}/alerts/{alert.pk}/resolve/")
    assert response.status_code == 404
    assert f"alert {alert.pk} does not exist in project {project.pk}" in response.content.decode()
    assert Alert.objects.get(pk=alert.pk).state == "firing"


def test_member_acknowledges_then_resolves_and_returns_to_the_same_list(web, user, project, alerts):
    alert = alerts["a_low"]
    back = f"state=firing&run={alerts['run_a'].pk}"
    response = web.post(f"/projects/{project.pk}/alerts/{alert.pk}/acknowledge/", {"back": back})
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/alerts/?{back}"
    alert.refresh_from_db()
    assert (alert.state, alert.acknowledged_by) == ("acknowledged", user)
    assert alert.acknowledged_at is not None
    page = web.get(response["Location"]).content.decode()
    assert f"Alert {alert.pk} (accuracy low) acknowledged." in page

    response = web.post(f"/projects/{project.pk}/alerts/{alert.pk}/resolve/")
    assert response["Location"] == f"/projects/{project.pk}/alerts/"
    alert.refresh_from_db()
    assert alert.state == "resolved"
    assert alert.resolved_at is not None

    # A stale button: the service refuses, the page says why, nothing changes.
    again = web.post(f"/projects/{project.pk}/alerts/{alert.pk}/acknowledge/", follow=True)
    assert f"alert {alert.pk} is resolved; only a firing alert can be acknowledged" in again.content.decode()
    assert Alert.objects.get(pk=alert.pk).state == "resolved"


def test_back_keeps_only_the_lists_own_parameters(web, project, alerts):
    alert = alerts["b_low"]
    back = "state=firing&next=https://evil.example/&page=2&run=<script>"
    response = web.post(f"/projects/{project.pk}/alerts/{alert.pk}/acknowledge/", {"back": back})
    assert response["Location"] == f"/projects/{project.pk}/alerts/?state=firing&page=2"


def test_viewer_reads_without_buttons_and_a_forged_post_is_refused(client, project, alerts, viewer):
    client.force_login(viewer)
    response = client.get(f"/projects/{project.pk}/alerts/")
    assert response.status_code == 200
    html = response.content.decode()
    assert len(_listed(response, "data-alert")) == 4
    assert "/acknowledge/" not in html
    assert "/resolve/" not in html
    assert "You are a viewer of this project" in html
    for action in ("acknowledge", "resolve"):
        refused = client.post(f"/projects/{project.pk}/alerts/{alerts['b_low'].pk}/{action}/")
        assert refused.status_code == 403
        assert f"you are a viewer of project {project.pk}; ask an owner for the member role" in (
            refused.content.decode()
        )
    assert Alert.objects.get(pk=alerts["b_low"].pk).state == "firing"
    assert Alert.objects.get(pk=alerts["b_low"].pk).acknowledged_by is None


def test_alerts_come_fifty_to_a_page(web, project, run, make_rule):
    rule = make_rule(project, name="many")
    now = timezone.now()
    made = Alert.objects.bulk_create(
        [
            Alert(rule=rule, run=run, source=f"s{i}", step=i, message=f"m{i}", state="resolved")
            for i in range(53)
        ]
    )
    for i, alert in enumerate(made):
        Alert.objects.filter(pk=alert.pk).update(fired_at=now - timedelta(seconds=i))
    first = web.get(f"/projects/{project.pk}/alerts/?state=resolved")
    assert _listed(first, "data-alert") == _ids(*made[:50])
    html = first.content.decode()
    assert "page 1 of 2 (53 alerts)" in html
    assert f'href="/projects/{project.pk}/alerts/?state=resolved&amp;page=2"' in html
    second = web.get(f"/projects/{project.pk}/alerts/?state=resolved&page=2")
    assert _listed(second, "data-alert") == _ids(*made[50:])
    # A page number out of range shows the last page, not an error.
    assert _listed(web.get(f"/projects/{project.pk}/alerts/?page=99"), "data-alert") == _ids(*made[50:])


def test_hostile_rule_names_sources_and_messages_are_escaped(web, project, make_run, make_rule):
    run = make_run(project, name=HOSTILE)
    rule = make_rule(project, name=HOSTILE)
    _alert(rule, run, source=HOSTILE, message=HOSTILE)
    html = web.get(f"/projects/{project.pk}/alerts/").content.decode()
    assert HOSTILE not in html
    assert html.count(HOSTILE_ESCAPED) >= 5  # run (in the list and the filter), source, rule, message

"""Tokens and alerts pages in a real browser: a token shown once, used on the API, revoked; alerts
acknowledged and resolved by clicking; both pages at 1280x800 and on a narrow screen.

Screenshots go to var/screenshots/ (ignored by git) for a person to look at.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from tests.e2e.conftest import ROOT, login

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"
HOSTILE = '<img src=x onerror="window.__pwned=1">'
SCREENSHOTS = ROOT / "var" / "screenshots"
DESKTOP = {"width": 1280, "height": 800}
NARROW = {"width": 390, "height": 844}


def _shoot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def _api_projects(base_url: str, raw: str) -> tuple[int, object]:
    """GET /api/v1/projects/ with the bearer token: (status, decoded JSON body)."""
    request = urllib.request.Request(
        base_url + "/api/v1/projects/", headers={"Authorization": f"Bearer {raw}"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _overflowing(page) -> list[str]:
    """What makes the page itself scroll sideways: nothing, when wide tables scroll in their own box."""
    return page.evaluate(
        """() => document.documentElement.scrollWidth <= window.innerWidth ? [] :
            [...document.querySelectorAll("body *")]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") + "." + e.className)"""
    )


def test_token_is_shown_once_works_on_the_api_and_stops_when_revoked(
    page, live_server_url, make_user, make_project
):
    from control.models import ApiToken

    user = make_user("tess", password=PASSWORD)
    make_project(user, "tokens demo")
    page.set_viewport_size(DESKTOP)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server_url)
    login(page, live_server_url, "tess", PASSWORD)
    page.locator("nav.topnav").get_by_role("link", name="Tokens", exact=True).click()
    page.wait_for_url("**/tokens/")
    page.get_by_text("No personal token yet.").wait_for()

    # A date in the past is explained beside its field and creates nothing.
    page.fill("#id_name", HOSTILE)
    page.fill("#id_expires_at", "2001-01-01T00:00")
    page.click("text=Create token")
    error = page.locator("#error-expires_at")
    error.wait_for()
    assert error.inner_text().startswith("must be in the future")
    assert page.locator("#id_name").input_value() == HOSTILE
    assert ApiToken.objects.count() == 0
    _shoot(page, "tokens-error-desktop")

    page.fill("#id_expires_at", "2999-12-31T23:59")
    page.click("text=Create token")
    created = page.locator("#token-created")
    created.wait_for()
    assert created.locator("h2").inner_text() == f"Token {HOSTILE} created"
    assert "Copy it now: it will not be shown again." in created.inner_text()
    raw = page.locator("#new-token").input_value()
    assert raw.startswith("tri_")
    page.click("#copy-token")
    page.locator("#copy-state", has_text="Copied.").wait_for()
    assert page.evaluate("() => navigator.clipboard.readText()") == raw
    token = ApiToken.objects.get()
    assert token.user == user and token.run_id is None
    assert token.expires_at.isoformat() == "2999-12-31T23:59:00+00:00"
    row = page.locator(f'tr[data-token="{token.pk}"]')
    assert row.locator("td.name").inner_text() == HOSTILE
    assert page.evaluate("() => window.__pwned") is None
    assert _overflowing(page) == []
    _shoot(page, "tokens-created-desktop")

    status, body = _api_projects(live_server_url, raw)
    assert status == 200
    assert [p["name"] for p in body["results"]] == ["tokens demo"]

    # Reloading the answer re-sends the form: no second token, and the value is not shown again.
    page.reload()
    page.get_by_text("This form was already sent (or has expired); no token was created.").wait_for()
    assert page.locator("#new-token").count() == 0
    assert raw not in page.content()
    assert ApiToken.objects.count() == 1
    page.goto(live_server_url + "/tokens/")
    assert raw not in page.content()
    cells = row.locator("td").all_inner_texts()
    assert cells[3] == "2999-12-31 23:59"
    assert cells[4] != "never"  # the API call above was recorded as the last use

    page.once("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Revoke").click()
    page.get_by_text("it no longer authenticates.").wait_for()
    assert row.locator("td.revoked").inner_text().startswith("revoked")
    assert row.get_by_role("button", name="Revoke").count() == 0
    token.refresh_from_db()
    assert token.revoked_at is not None
    status, body = _api_projects(live_server_url, raw)
    assert status == 401
    assert body["message"] == "invalid, expired or revoked token"
    _shoot(page, "tokens-revoked-desktop")

    page.set_viewport_size(NARROW)
    page.reload()
    _shoot(page, "tokens-narrow")
    assert _overflowing(page) == []


def test_alerts_are_acknowledged_and_resolved_by_clicking(
    page, live_server_url, make_user, make_project, make_run, make_rule, add_member
):
    from control.models import Alert

    user = make_user("ada", password=PASSWORD)
    project = make_project(user, "alerts demo")
    run = make_run(project, name="grpo 7b")
    other = make_run(project, name="dapo 3b")
    low = make_rule(project, name="accuracy low", source="synth_math")
    hostile = make_rule(project, name=HOSTILE, key="actor/pg_loss", condition="not_finite")
    firing = Alert.objects.create(
        rule=low,
        run=run,
        source="synth_math",
        step=120,
        value=0.12,
        message="accuracy low: reward/accuracy on source synth_math is 0.12 at step 120 (value < 0.5)",
    )
    strange = Alert.objects.create(rule=hostile, run=other, source=HOSTILE, step=7, message=HOSTILE)

    page.set_viewport_size(DESKTOP)
    login(page, live_server_url, "ada", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/")
    page.locator("nav.topnav").get_by_role("link", name="Alerts", exact=True).click()
    page.wait_for_url(f"**/projects/{project.pk}/alerts/")
    rows = page.locator("table.alerts tbody tr")
    assert rows.count() == 2
    row = page.locator(f'tr[data-alert="{firing.pk}"]')
    assert row.locator("td").all_inner_texts()[1:5] == ["grpo 7b", "synth_math", "accuracy low", "Firing"]
    strange_cells = page.locator(f'tr[data-alert="{strange.pk}"] td').all_inner_texts()
    assert strange_cells[2:4] == [HOSTILE, HOSTILE]
    assert strange_cells[5] == HOSTILE
    assert page.evaluate("() => window.__pwned") is None
    assert _overflowing(page) == []
    _shoot(page, "alerts-desktop")

    row.get_by_role("button", name="Acknowledge").click()
    page.get_by_text(f"Alert {firing.pk} (accuracy low) acknowledged.").wait_for()
    assert row.locator(".status").inner_text() == "Acknowledged"
    assert row.get_by_role("button", name="Acknowledge").count() == 0
    firing.refresh_from_db()
    assert (firing.state, firing.acknowledged_by) == ("acknowledged", user)
    _shoot(page, "alerts-acknowledged-desktop")

    # The filter is kept across the button's POST.
    page.select_option("select[name=state]", "acknowledged")
    page.click("text=Filter")
    page.wait_for_url("**state=acknowledged**")
    assert rows.count() == 1
    row.get_by_role("button", name="Resolve").click()
    page.get_by_text(f"Alert {firing.pk} (accuracy low) resolved.").wait_for()
    assert "state=acknowledged" in page.url
    page.get_by_text("No alert matches these filters.").wait_for()
    firing.refresh_from_db()
    assert firing.state == "resolved"

    page.select_option("select[name=state]", "")
    page.select_option("select[name=run]", str(run.pk))
    page.click("text=Filter")
    page.wait_for_url(f"**run={run.pk}**")
    assert row.locator(".status").inner_text() == "Resolved"
    assert rows.count() == 1
    assert row.get_by_role("button").count() == 0
    _shoot(page, "alerts-resolved-desktop")

    page.set_viewport_size(NARROW)
    page.goto(f"{live_server_url}/projects/{project.pk}/alerts/")
    page.locator(f'tr[data-alert="{strange.pk}"]').get_by_role("button", name="Acknowledge").wait_for()
    _shoot(page, "alerts-member-narrow")
    assert _overflowing(page) == []

    # A viewer reads the same list without any button.
    viewer = make_user("vic", password=PASSWORD)
    add_member(project, viewer, "viewer")
    page.context.clear_cookies()
    login(page, live_server_url, "vic", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/alerts/")
    page.get_by_text("You are a viewer of this project").wait_for()
    assert rows.count() == 2
    assert page.locator("table.alerts button").count() == 0
    _shoot(page, "alerts-viewer-narrow")
    assert _overflowing(page) == []

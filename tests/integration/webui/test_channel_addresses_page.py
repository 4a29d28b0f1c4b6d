"""The notification channels page shows a channel's address whole to the project's editors and
masked to its viewers (a webhook URL carries its key), in the list and in delivery errors."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

HOOK = "https://hooks.example.com/services/T0123/B0456/abcdEFGH<b>x</b>ijklMNOPqrst"
HOOK_MASKED = "https://hooks.example.com/…qrst"
MAIL = "oncall-team@example.org"
MAIL_MASKED = "o…@example.org"


@pytest.fixture
def channels(project):
    from control.models import AlertDelivery, NotificationChannel

    hook = NotificationChannel.objects.create(project=project, name="slack", kind="webhook", url=HOOK)
    mail = NotificationChannel.objects.create(project=project, name="pager", kind="email", email=MAIL)
    AlertDelivery.objects.create(
        channel=mail, test=True, state="failed", attempts=1, last_error=f"SMTPRecipientsRefused: {MAIL}"
    )
    AlertDelivery.objects.create(
        channel=hook, test=True, state="failed", attempts=1, last_error=f"refused: {HOOK} is private"
    )
    return hook, mail


def _cells(page: str) -> str:
    return page.split("<h2>Channels</h2>", 1)[1]


def test_a_viewer_sees_the_addresses_masked(client, project, viewer, channels):
    client.force_login(viewer)
    response = client.get(f"/projects/{project.pk}/channels/")
    assert response.status_code == 200
    page = response.content.decode()
    listing = _cells(page)
    assert HOOK_MASKED in listing and MAIL_MASKED in listing
    assert "abcdEFGH" not in page and "oncall-team" not in page
    assert f"SMTPRecipientsRefused: {MAIL_MASKED}" in listing
    assert f"refused: {HOOK_MASKED} is private" in listing


@pytest.mark.parametrize("role", ["owner", "member"])
def test_an_editor_sees_the_addresses_whole(role, client, project, user, make_user, add_member, channels):
    person = user if role == "owner" else make_user("mia")
    if role == "member":
        add_member(project, person, "member")
    client.force_login(person)
    listing = _cells(client.get(f"/projects/{project.pk}/channels/").content.decode())
    # Escaped, as every value on the page.
    escaped = HOOK.replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in listing and MAIL in listing and "<b>x</b>" not in listing
    assert f"SMTPRecipientsRefused: {MAIL}" in listing


def test_the_alert_rules_page_names_channels_without_their_address(
    client, project, viewer, channels, make_rule
):
    make_rule(project, name="low accuracy", channels=list(channels))
    client.force_login(viewer)
    page = client.get(f"/projects/{project.pk}/alert-rules/").content.decode()
    assert "slack" in page and "pager" in page
    assert "hooks.example.com" not in page and "example.org" not in page

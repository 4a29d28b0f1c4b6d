"""A notification channel's address is a secret (a webhook URL carries its key): the project's
editors (owners, members) read it whole; viewers read it masked, in the API and on the page.

Masked: a webhook URL keeps its scheme and host and at most the last 4 characters of the rest
(none when the rest is short); an e-mail address keeps its first character and its domain.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db

API = "/api/v1/"
CHANNELS = API + "notification-channels/"
HOOK = "https://hooks.example.com/services/T0123/B0456/abcdEFGHijklMNOPqrst"
HOOK_MASKED = "https://hooks.example.com/…qrst"
MAIL = "oncall-team@example.org"
MAIL_MASKED = "o…@example.org"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        (HOOK, HOOK_MASKED),
        ("http://127.0.0.1:9/hook", "http://127.0.0.1:9/…"),  # a short rest shows nothing of itself
        ("https://hooks.example.com", "https://hooks.example.com/…"),
        ("https://hooks.example.com/?token=0123456789abcdefWXYZ", "https://hooks.example.com/…WXYZ"),
        ("https://[2001:db8::1]:8443/hooks/0123456789abcdefWXYZ", "https://[2001:db8::1]:8443/…WXYZ"),
        ("https://user:pw@hooks.example.com/0123456789abcdefWXYZ", "https://hooks.example.com/…WXYZ"),
        ("https://hooks.example.com/<script>alert(1)</script>/0123456789", "https://hooks.example.com/…6789"),
        ("not a url at all", "…"),
        ("http://[::1", "…"),
        ("", ""),
    ],
)
def test_a_webhook_url_is_masked(url, masked):
    from control.selectors.notifications import url_masked

    assert url_masked(url) == masked


@pytest.mark.parametrize(
    ("email", "masked"),
    [
        (MAIL, MAIL_MASKED),
        ("a@example.com", "a…@example.com"),
        ("ünï@bücher.example", "ü…@bücher.example"),
        ("no-at-sign", "…"),
        ("@example.com", "…"),
        ("", ""),
    ],
)
def test_an_email_address_is_masked(email, masked):
    from control.selectors.notifications import email_masked

    assert email_masked(email) == masked


@pytest.fixture
def channels(project):
    """A webhook and an e-mail channel of ``project``, made as they are stored."""
    from control.models import NotificationChannel

    hook = NotificationChannel.objects.create(project=project, name="slack", kind="webhook", url=HOOK)
    mail = NotificationChannel.objects.create(project=project, name="pager", kind="email", email=MAIL)
    return hook, mail


def _addresses(items: list[dict]) -> dict[str, tuple[str, str]]:
    return {c["name"]: (c["url"], c["email"]) for c in items}


WHOLE = {"slack": (HOOK, ""), "pager": ("", MAIL)}
MASKED = {"slack": (HOOK_MASKED, ""), "pager": ("", MAIL_MASKED)}


def test_a_viewer_reads_addresses_masked(channels, project, viewer, client_for):
    client = client_for(viewer)
    listed = client.get(CHANNELS, {"project": project.pk})
    assert listed.status_code == 200
    assert _addresses(listed.json()["results"]) == MASKED
    for channel in channels:
        detail = client.get(CHANNELS + f"{channel.pk}/").json()
        assert _addresses([detail]) == {channel.name: MASKED[channel.name]}
    everything = b"".join(client.get(path).content for path in (CHANNELS, CHANNELS + f"{channels[0].pk}/"))
    assert b"abcdEFGH" not in everything and b"oncall-team" not in everything
    assert channels[0].secret.encode() not in everything


@pytest.mark.parametrize("role", ["owner", "member"])
def test_an_editor_reads_addresses_whole(role, channels, project, user, make_user, add_member, client_for):
    person = user if role == "owner" else make_user("mia")
    if role == "member":
        add_member(project, person, "member")
    client = client_for(person)
    assert _addresses(client.get(CHANNELS, {"project": project.pk}).json()["results"]) == WHOLE
    hook = client.get(CHANNELS + f"{channels[0].pk}/").json()
    assert hook["url"] == HOOK
    patched = client.patch(CHANNELS + f"{channels[1].pk}/", {"name": "pager 2"}, format="json").json()
    assert patched["email"] == MAIL


def test_each_project_of_a_list_is_shown_as_the_caller_may_see_it(
    channels, project, viewer, make_project, client_for
):
    from control.models import NotificationChannel

    # The viewer of ``project`` owns another project: its channel whole, the other ones masked.
    own = make_project(viewer, "mine")
    NotificationChannel.objects.create(project=own, name="mine", kind="email", email="victor@example.net")
    listed = client_for(viewer).get(CHANNELS).json()["results"]
    assert _addresses(listed) == {**MASKED, "mine": ("", "victor@example.net")}


def test_a_viewer_reads_delivery_errors_without_the_address(channels, viewer, user, client_for):
    from control.models import AlertDelivery

    hook, mail = channels
    for channel, error in (
        (mail, f"the e-mail could not be sent: SMTPRecipientsRefused: {{'{MAIL}': (550, b'no such user')}}"),
        (hook, f"refused: {HOOK} does not resolve"),
    ):
        AlertDelivery.objects.create(channel=channel, test=True, state="failed", attempts=1, last_error=error)
    shown = {
        c.name: client_for(viewer).get(CHANNELS + f"{c.pk}/deliveries/").json()["results"][0]["last_error"]
        for c in channels
    }
    refused = f"SMTPRecipientsRefused: {{'{MAIL_MASKED}': (550, b'no such user')}}"
    assert shown == {
        "pager": f"the e-mail could not be sent: {refused}",
        "slack": f"refused: {HOOK_MASKED} does not resolve",
    }
    whole = client_for(user).get(CHANNELS + f"{mail.pk}/deliveries/").json()["results"][0]["last_error"]
    assert MAIL in whole


def test_the_schema_still_names_the_address_fields(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    fields = schema["components"]["schemas"]["ChannelOutput"]["properties"]
    assert {"url", "email"} <= set(fields)
    assert "masked" in fields["url"]["description"] and "masked" in fields["email"]["description"]

"""The notification channels page: creating a channel (a webhook's secret shown once), the
service's refusals beside their field, sending a test, deleting, and who may do what."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.django_db

HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture
def browser(client, user, settings):
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    client.force_login(user)
    return client


def _form_id(page: str) -> str:
    return re.search(r'name="form_id" value="([^"]+)"', page).group(1)


def _create(browser, project, **fields):
    """Open the page and send its form with ``fields`` changed; the response carries what was sent."""
    page = browser.get(f"/projects/{project.pk}/channels/").content.decode()
    data = {"name": "hooks", "kind": "webhook", "url": "http://127.0.0.1:9/hook", "email": ""}
    data.update(fields, form_id=_form_id(page))
    response = browser.post(f"/projects/{project.pk}/channels/", data)
    response.sent = data
    return response


def test_a_webhook_secret_is_shown_once(browser, project):
    from control.models import NotificationChannel

    response = _create(browser, project, name=HOSTILE, email="left@over.org")
    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0") and "no-store" in response["Cache-Control"]
    channel = NotificationChannel.objects.get()
    assert (channel.kind, channel.url, channel.email) == ("webhook", "http://127.0.0.1:9/hook", "")
    page = response.content.decode()
    assert f'value="{channel.secret}"' in page
    assert HOSTILE not in page and "Channel &lt;img src=x" in page
    # Sent again (a reload), the form is spent: no second channel, no secret.
    again = browser.post(f"/projects/{project.pk}/channels/", response.sent, follow=True)
    assert "This form was already sent (or has expired); no channel was created." in again.content.decode()
    assert NotificationChannel.objects.count() == 1
    listing = browser.get(f"/projects/{project.pk}/channels/").content.decode()
    assert channel.secret not in listing and "http://127.0.0.1:9/hook" in listing


def test_an_email_channel_keeps_only_its_address(browser, project):
    from control.models import NotificationChannel

    response = _create(
        browser, project, name="ops", kind="email", url="http://left.over/", email="ops@example.com"
    )
    assert response.status_code == 200
    channel = NotificationChannel.objects.get()
    assert (channel.kind, channel.url, channel.email) == ("email", "", "ops@example.com")
    assert channel.secret not in response.content.decode()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        (
            {"url": "ftp://example.com/x"},
            "url",
            "must be an http or https URL, got &#x27;ftp://example.com/x&#x27;",
        ),
        ({"url": ""}, "url", "required: a webhook needs an http or https URL"),
        ({"kind": "email", "email": "nobody"}, "email", "not a valid e-mail address: &#x27;nobody&#x27;"),
        ({"name": ""}, "name", "This field is required."),
    ],
)
def test_a_refused_channel_is_explained_beside_its_field(browser, project, fields, field, message):
    from control.models import NotificationChannel

    response = _create(browser, project, **fields)
    assert response.status_code == 400
    page = response.content.decode()
    assert re.search(rf'id="error-{field}">([^<]*)<', page).group(1) == message
    assert NotificationChannel.objects.count() == 0


def test_a_private_address_is_refused_unless_allowed(browser, project, settings):
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = []
    response = _create(browser, project, url="http://169.254.169.254/latest")
    assert response.status_code == 400
    assert "a link-local address" in re.search(r'id="error-url">([^<]*)<', response.content.decode()).group(1)


def test_a_test_is_sent_and_listed_and_a_channel_is_deleted(browser, project, make_rule):
    from control.models import AlertDelivery, NotificationChannel

    _create(browser, project)
    channel = NotificationChannel.objects.get()
    response = browser.post(f"/projects/{project.pk}/channels/{channel.pk}/test/")
    assert response.status_code == 302
    assert response["Location"] == f"/projects/{project.pk}/channels/#channel-{channel.pk}"
    delivery = AlertDelivery.objects.get()
    assert (delivery.channel, delivery.test, delivery.state) == (channel, True, "pending")
    AlertDelivery.objects.filter(pk=delivery.pk).update(state="failed", attempts=6, last_error="HTTP 500 <b>")
    page = browser.get(f"/projects/{project.pk}/channels/").content.decode()
    assert f'data-delivery="{delivery.pk}" data-state="failed"' in page
    assert "6 attempts" in page and "HTTP 500 &lt;b&gt;" in page

    make_rule(project, name="low", channels=[channel])
    assert browser.post(f"/projects/{project.pk}/channels/{channel.pk}/delete/").status_code == 302
    assert not NotificationChannel.objects.exists()


def test_a_viewer_reads_the_channels_and_cannot_change_them(client, project, viewer):
    from control.models import AlertDelivery, NotificationChannel

    channel = NotificationChannel.objects.create(project=project, name="ops", kind="email", email="o@x.org")
    client.force_login(viewer)
    page = client.get(f"/projects/{project.pk}/channels/").content.decode()
    assert "ops" in page and "You are a viewer" in page and "<button" not in page.split("<main>")[1]
    assert channel.secret not in page
    post = {"name": "x", "kind": "email", "email": "a@b.org", "url": "", "form_id": "x"}
    assert client.post(f"/projects/{project.pk}/channels/", post).status_code == 403
    assert client.post(f"/projects/{project.pk}/channels/{channel.pk}/test/").status_code == 403
    assert client.post(f"/projects/{project.pk}/channels/{channel.pk}/delete/").status_code == 403
    assert NotificationChannel.objects.count() == 1 and not AlertDelivery.objects.exists()


def test_another_projects_channels_are_404(client, project, other_user):
    from control.models import NotificationChannel

    channel = NotificationChannel.objects.create(project=project, name="ops", kind="email", email="o@x.org")
    client.force_login(other_user)
    assert client.get(f"/projects/{project.pk}/channels/").status_code == 404
    assert client.post(f"/projects/{project.pk}/channels/{channel.pk}/test/").status_code == 404

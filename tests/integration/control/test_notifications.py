"""Notification channels: signed webhooks to a real local HTTP server, e-mail, retries, the SSRF guard
at save and at send time, and the REST API (/api/v1/notification-channels/).

The Celery tasks run eagerly here (``Task.apply``: a retry runs again at once, without its
back-off); the tasks on a real worker are in test_celery.py.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from tests.integration.control.helpers import assert_error, field_errors

pytestmark = pytest.mark.django_db

API = "/api/v1/"
CHANNELS = API + "notification-channels/"
ACC = "reward/accuracy"
HINT = (
    ": webhooks may only reach public addresses (an administrator may list the host in "
    "TRIUNE_WEBHOOK_ALLOWED_HOSTS)"
)


@pytest.fixture
def receiver():
    """A webhook receiver on 127.0.0.1: records each request; ``answers`` holds the statuses to
    give, one a request, the last one repeated (a ``(302, location)`` pair redirects)."""
    hits: list[dict] = []
    state = {"answers": [200]}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hits.append({"path": self.path, "headers": dict(self.headers), "body": body})
            answers = state["answers"]
            answer = answers.pop(0) if len(answers) > 1 else answers[0]
            status, location = answer if isinstance(answer, tuple) else (answer, None)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            port=server.server_port,
            url=f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX",
            hits=hits,
            state=state,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def loopback_allowed(settings):
    """The test receiver listens on loopback, which webhooks may reach only when allow-listed."""
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    return settings


@pytest.fixture
def enqueued(monkeypatch):
    """The tasks the notification services enqueue (by name, once their transaction commits)."""
    sent: list[tuple] = []
    monkeypatch.setattr("control.services.notifications.enqueue_task", lambda *args: sent.append(args))
    return sent


@pytest.fixture
def dns(monkeypatch):
    """``dns["hooks.example.com"] = "93.184.215.14"``: what a host resolves to (other hosts as usual)."""
    table: dict[str, str] = {}
    real = socket.getaddrinfo
    asked: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            asked.append(host)
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr("control.services.notifications.socket.getaddrinfo", getaddrinfo)
    return SimpleNamespace(table=table, asked=asked)


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


@pytest.fixture
def firing(project, run, make_rule, ingest):
    """``firing(*channels)``: an alert of ``run`` fired by a rule sending to ``channels``."""
    from control.models import Alert

    def fire(*channels, name: str = "accuracy collapse"):
        rule = make_rule(project, name=name, channels=list(channels))
        with pytest.MonkeyPatch.context() as patch:  # deliver by hand below, not from the ingest
            patch.setattr("control.services.alerts.enqueue_task", lambda *args: None)
            ingest(run, (7, ACC, "geo", 0.125))
        return Alert.objects.get(run=run, rule=rule)

    return fire


def _webhook(project, url: str, name: str = "slack", **fields):
    from control.services.notifications import channel_create

    return channel_create(
        project=project, user=project.created_by, name=name, kind="webhook", url=url, **fields
    )


def _email(project, address: str = "oncall@example.com", name: str = "on call", **fields):
    from control.services.notifications import channel_create

    return channel_create(
        project=project, user=project.created_by, name=name, kind="email", email=address, **fields
    )


def _notify(alert, enqueued, django_capture_on_commit_callbacks) -> list[int]:
    """Run the alert_deliver task; returns the deliveries it made, each enqueued for sending."""
    from workers.tasks import alert_deliver

    already = len(enqueued)
    with django_capture_on_commit_callbacks(execute=True):
        ids = alert_deliver.apply(args=[alert.pk]).get()
    assert enqueued[already:] == [("workers.tasks.delivery_send", i) for i in ids]
    return ids


def _send(delivery_id: int):
    """Run the delivery_send task eagerly (its retries at once); returns its result."""
    from workers.tasks import delivery_send_task

    return delivery_send_task.apply(args=[delivery_id])


def _signature_ok(hit: dict, secret: str) -> bool:
    timestamp = hit["headers"]["X-Triune-Timestamp"]
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + hit["body"], hashlib.sha256).hexdigest()
    return hmac.compare_digest(hit["headers"]["X-Triune-Signature"], f"sha256={mac}")


# ---- delivery ------------------------------------------------------------------------------


def test_a_fired_alert_reaches_the_webhook_signed(
    receiver, loopback_allowed, project, run, firing, enqueued, django_capture_on_commit_callbacks, settings
):
    from control.models import AlertDelivery

    channel = _webhook(project, receiver.url)
    alert = firing(channel)
    [delivery_id] = _notify(alert, enqueued, django_capture_on_commit_callbacks)
    before = int(time.time())
    assert _send(delivery_id).get() == "sent"
    after = int(time.time())

    [hit] = receiver.hits
    assert hit["path"] == "/services/T000/B000/XXXX"
    assert hit["headers"]["Content-Type"] == "application/json"
    assert hit["headers"]["X-Triune-Delivery"] == str(delivery_id)
    assert before <= int(hit["headers"]["X-Triune-Timestamp"]) <= after
    assert _signature_ok(hit, channel.secret)
    assert json.loads(hit["body"]) == {
        "text": f":rotating_light: {alert.message}",
        "attachments": [
            {
                "title": run.name,
                "title_link": f"{settings.PUBLIC_URL}/runs/{run.pk}/",
                "color": "warning",
                "fields": [
                    {"title": "Severity", "value": "warning", "short": True},
                    {"title": "Source", "value": "geo", "short": True},
                    {"title": "Step", "value": "7", "short": True},
                    {"title": "Key", "value": ACC, "short": True},
                    {"title": "Value", "value": "0.125", "short": True},
                    {"title": "Rule", "value": "accuracy collapse", "short": True},
                ],
                "ts": int(alert.fired_at.timestamp()),
            }
        ],
    }
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.alert_id, delivery.channel_id, delivery.test) == (alert.pk, channel.pk, False)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("sent", 1, "")
    assert delivery.sent_at is not None


def test_a_signature_made_with_another_secret_does_not_match(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    channel = _webhook(project, receiver.url)
    other = _webhook(project, receiver.url, name="other")
    assert channel.secret != other.secret and len(channel.secret) >= 40
    [delivery_id] = _notify(firing(channel), enqueued, django_capture_on_commit_callbacks)
    _send(delivery_id)
    [hit] = receiver.hits
    assert _signature_ok(hit, channel.secret)
    assert not _signature_ok(hit, other.secret)
    tampered = {**hit, "body": hit["body"].replace(b"accuracy", b"acCuracy")}
    assert not _signature_ok(tampered, channel.secret)


def test_an_email_channel_receives_the_alert(
    project, run, firing, enqueued, django_capture_on_commit_callbacks, mailoutbox, settings
):
    from control.models import AlertDelivery

    channel = _email(project, "oncall@example.com")
    alert = firing(channel, name="nan loss")
    [delivery_id] = _notify(alert, enqueued, django_capture_on_commit_callbacks)
    assert _send(delivery_id).get() == "sent"
    [mail] = mailoutbox
    assert (mail.subject, mail.to) == ("[Triune] warning nan loss", ["oncall@example.com"])
    assert mail.body == (
        f"{alert.message}\n\n"
        f"Run: {run.name} ({settings.PUBLIC_URL}/runs/{run.pk}/)\n"
        "Source: geo\nStep: 7\nKey: reward/accuracy\nValue: 0.125\n"
    )
    assert AlertDelivery.objects.get(pk=delivery_id).state == "sent"
    assert channel.pk == AlertDelivery.objects.get(pk=delivery_id).channel_id


def test_one_delivery_per_enabled_channel_and_none_twice(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery

    hook, mail = _webhook(project, receiver.url), _email(project)
    off = _email(project, "nobody@example.com", name="muted", enabled=False)
    alert = firing(hook, mail, off)
    ids = _notify(alert, enqueued, django_capture_on_commit_callbacks)
    assert sorted(AlertDelivery.objects.filter(pk__in=ids).values_list("channel_id", flat=True)) == sorted(
        [hook.pk, mail.pk]
    )
    # The task run again (a redelivered message): no second delivery, nothing enqueued.
    assert _notify(alert, enqueued, django_capture_on_commit_callbacks) == []
    assert AlertDelivery.objects.filter(alert=alert).count() == 2
    assert len(enqueued) == 2


def test_an_alert_without_channels_or_missing_notifies_nobody(
    project, firing, enqueued, django_capture_on_commit_callbacks
):
    assert _notify(firing(), enqueued, django_capture_on_commit_callbacks) == []
    assert _notify(SimpleNamespace(pk=987654), enqueued, django_capture_on_commit_callbacks) == []
    assert enqueued == []
    assert _send(987654).get() is None


def test_a_failing_webhook_is_retried_then_fails(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks, monkeypatch
):
    from control.models import AlertDelivery
    from workers.tasks import DELIVERY_MAX_RETRIES, delivery_send_task

    countdowns = []
    retry = delivery_send_task.retry

    def recorded(*args, countdown=None, **kwargs):
        countdowns.append(countdown)
        return retry(*args, countdown=countdown, **kwargs)

    monkeypatch.setattr(delivery_send_task, "retry", recorded)
    receiver.state["answers"] = [500]
    [delivery_id] = _notify(
        firing(_webhook(project, receiver.url)), enqueued, django_capture_on_commit_callbacks
    )
    assert _send(delivery_id).get() == "failed"
    assert len(receiver.hits) == 1 + DELIVERY_MAX_RETRIES == 6
    assert countdowns == [2, 4, 8, 16, 32]  # seconds: 2 ** retry, exponential back-off
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_error) == (
        "failed",
        6,
        "the webhook answered HTTP 500",
    )
    assert delivery.sent_at is None
    # A failed delivery is not sent again by a task that comes late.
    assert _send(delivery_id).get() == "failed"
    assert len(receiver.hits) == 6


def test_a_webhook_that_recovers_is_sent_on_a_retry(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery

    receiver.state["answers"] = [503, 502, 200]
    [delivery_id] = _notify(
        firing(_webhook(project, receiver.url)), enqueued, django_capture_on_commit_callbacks
    )
    assert _send(delivery_id).get() == "sent"
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts, delivery.last_error) == ("sent", 3, "")
    assert len(receiver.hits) == 3
    # Every attempt is signed afresh, with the same body.
    assert len({hit["body"] for hit in receiver.hits}) == 1


def test_each_attempt_is_recorded_by_the_service(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery
    from control.services.notifications import DeliveryError, delivery_send

    receiver.state["answers"] = [500]
    [delivery_id] = _notify(
        firing(_webhook(project, receiver.url)), enqueued, django_capture_on_commit_callbacks
    )
    states = []
    for attempt in range(1, 4):
        with pytest.raises(DeliveryError, match="HTTP 500") as caught:
            delivery_send(delivery_id=delivery_id, final=attempt == 3)
        assert caught.value.retry is True
        delivery = AlertDelivery.objects.get(pk=delivery_id)
        states.append((delivery.state, delivery.attempts, delivery.last_error))
    assert states == [
        ("pending", 1, "the webhook answered HTTP 500"),
        ("pending", 2, "the webhook answered HTTP 500"),
        ("failed", 3, "the webhook answered HTTP 500"),
    ]


def test_a_redirect_is_not_followed(
    receiver, loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery

    receiver.state["answers"] = [(302, f"http://127.0.0.1:{receiver.port}/elsewhere")]
    [delivery_id] = _notify(
        firing(_webhook(project, receiver.url)), enqueued, django_capture_on_commit_callbacks
    )
    assert _send(delivery_id).get() == "failed"
    assert {hit["path"] for hit in receiver.hits} == {"/services/T000/B000/XXXX"}
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert delivery.last_error == "the webhook answered HTTP 302; redirects are not followed"


def test_an_unreachable_webhook_fails_with_the_network_error(
    loopback_allowed, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    [delivery_id] = _notify(
        firing(_webhook(project, f"http://127.0.0.1:{port}/hook")),
        enqueued,
        django_capture_on_commit_callbacks,
    )
    assert _send(delivery_id).get() == "failed"
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    assert (delivery.state, delivery.attempts) == ("failed", 6)
    assert delivery.last_error.startswith("the webhook could not be reached: ConnectionRefusedError")


# ---- the SSRF guard at send time -----------------------------------------------------------


def test_a_host_that_now_resolves_to_loopback_is_refused_at_send_time(
    receiver, dns, settings, project, firing, enqueued, django_capture_on_commit_callbacks
):
    from control.models import AlertDelivery

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = []
    dns.table["hooks.example.com"] = "93.184.215.14"  # public when the channel is saved
    channel = _webhook(project, f"http://hooks.example.com:{receiver.port}/hook")
    dns.table["hooks.example.com"] = "127.0.0.1"  # then the name points inside (DNS rebinding)
    [delivery_id] = _notify(firing(channel), enqueued, django_capture_on_commit_callbacks)
    assert _send(delivery_id).get() == "failed"
    assert receiver.hits == []
    delivery = AlertDelivery.objects.get(pk=delivery_id)
    # Refused at once: retrying cannot make the address public.
    assert (delivery.state, delivery.attempts) == ("failed", 1)
    assert delivery.last_error == (
        f"refused: url: the host 'hooks.example.com' resolves to 127.0.0.1, a loopback address{HINT}"
    )


def test_the_connection_goes_to_the_address_that_was_checked(
    receiver, dns, settings, project, firing, enqueued, django_capture_on_commit_callbacks
):
    """The name is resolved once per send, checked, and the socket opened to that very address: no
    second lookup that a rebinding resolver could answer differently."""
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["hooks.example.com"]
    dns.table["hooks.example.com"] = "127.0.0.1"
    channel = _webhook(project, f"http://hooks.example.com:{receiver.port}/hook?team=rl")
    [delivery_id] = _notify(firing(channel), enqueued, django_capture_on_commit_callbacks)
    dns.asked.clear()
    assert _send(delivery_id).get() == "sent"
    assert dns.asked == ["hooks.example.com"]
    [hit] = receiver.hits
    assert hit["path"] == "/hook?team=rl"
    assert hit["headers"]["Host"] == f"hooks.example.com:{receiver.port}"


# ---- the test button -----------------------------------------------------------------------


def test_the_test_button_sends_a_test_message(
    receiver, loopback_allowed, project, owner, enqueued, django_capture_on_commit_callbacks, settings
):
    channel = _webhook(project, receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.post(CHANNELS + f"{channel.pk}/test/")
    assert response.status_code == 202, response.content
    body = response.json()
    assert {k: body[k] for k in ("alert", "channel", "test", "state", "attempts")} == {
        "alert": None,
        "channel": channel.pk,
        "test": True,
        "state": "pending",
        "attempts": 0,
    }
    assert enqueued == [("workers.tasks.delivery_send", body["id"])]
    assert _send(body["id"]).get() == "sent"
    [hit] = receiver.hits
    assert _signature_ok(hit, channel.secret)
    assert json.loads(hit["body"]) == {
        "text": ":white_check_mark: Test notification from Triune: the channel 'slack' of project "
        "'vision rl' works.",
        "attachments": [
            {"title": "vision rl", "title_link": f"{settings.PUBLIC_URL}/projects/{project.pk}/"}
        ],
    }
    listed = owner.get(CHANNELS + f"{channel.pk}/deliveries/").json()
    assert [(d["id"], d["test"], d["state"], d["attempts"]) for d in listed["results"]] == [
        (body["id"], True, "sent", 1)
    ]


def test_the_test_button_on_an_email_channel(
    project, owner, enqueued, django_capture_on_commit_callbacks, mailoutbox
):
    channel = _email(project, "oncall@example.com", enabled=False)  # a disabled channel may be tested
    with django_capture_on_commit_callbacks(execute=True):
        delivery_id = owner.post(CHANNELS + f"{channel.pk}/test/").json()["id"]
    assert _send(delivery_id).get() == "sent"
    assert [(m.subject, m.to, m.body) for m in mailoutbox] == [
        (
            "[Triune] test of on call",
            ["oncall@example.com"],
            "Test notification from Triune: the channel 'on call' of project 'vision rl' works.",
        )
    ]


def test_deliveries_list_the_most_recent_first(
    receiver, loopback_allowed, project, owner, enqueued, django_capture_on_commit_callbacks
):
    receiver.state["answers"] = [500]
    channel = _webhook(project, receiver.url)
    ids = [owner.post(CHANNELS + f"{channel.pk}/test/").json()["id"] for _ in range(3)]
    _send(ids[0])
    listed = owner.get(CHANNELS + f"{channel.pk}/deliveries/").json()
    assert [d["id"] for d in listed["results"]] == ids[::-1]
    assert listed["results"][-1] | {"created_at": None} == {
        "id": ids[0],
        "alert": None,
        "channel": channel.pk,
        "test": True,
        "state": "failed",
        "attempts": 6,
        "last_error": "the webhook answered HTTP 500",
        "created_at": None,
        "sent_at": None,
    }


# ---- the API -------------------------------------------------------------------------------


def test_create_shows_the_secret_once(project, owner, caplog):
    from control.models import NotificationChannel

    caplog.set_level(logging.DEBUG)
    body = {"project": project.pk, "name": "on call", "kind": "email", "email": "oncall@example.com"}
    created = owner.post(CHANNELS, body, format="json")
    assert created.status_code == 201, created.content
    out = created.json()
    channel = NotificationChannel.objects.get(pk=out["id"])
    assert out == {
        "id": channel.pk,
        "project": project.pk,
        "name": "on call",
        "kind": "email",
        "url": "",
        "email": "oncall@example.com",
        "enabled": True,
        "created_at": out["created_at"],
        "secret": channel.secret,
    }
    assert channel.created_by_id == project.created_by_id
    detail = owner.get(CHANNELS + f"{channel.pk}/").json()
    listed = owner.get(CHANNELS, {"project": project.pk}).json()["results"]
    patched = owner.patch(CHANNELS + f"{channel.pk}/", {"name": "pager"}, format="json").json()
    for shown in (detail, *listed, patched):
        assert "secret" not in shown
        assert channel.secret not in json.dumps(shown)
    assert channel.secret not in caplog.text


def test_a_webhook_channel_through_the_api(receiver, loopback_allowed, project, owner, make_rule):
    from control.models import NotificationChannel

    body = {"project": project.pk, "name": "slack", "kind": "webhook", "url": receiver.url, "enabled": False}
    created = owner.post(CHANNELS, body, format="json")
    assert created.status_code == 201, created.content
    channel_id = created.json()["id"]
    assert {k: created.json()[k] for k in body} == body
    # A rule picks it; deleting the channel takes it out of the rule.
    rule = make_rule(project, channels=NotificationChannel.objects.filter(pk=channel_id))
    assert list(rule.channels.values_list("pk", flat=True)) == [channel_id]
    patched = owner.patch(CHANNELS + f"{channel_id}/", {"enabled": True}, format="json")
    assert patched.json()["enabled"] is True
    assert owner.delete(CHANNELS + f"{channel_id}/").status_code == 204
    assert list(rule.channels.all()) == []
    assert_error(owner.get(CHANNELS + f"{channel_id}/"), 404, code="not_found")
    assert receiver.hits == []


def test_a_channel_changes_kind_when_its_other_address_is_cleared(project, owner, dns, settings):
    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = []
    dns.table["hooks.example.com"] = "93.184.215.14"
    channel = _email(project)
    refused = owner.patch(
        CHANNELS + f"{channel.pk}/", {"kind": "webhook", "url": "https://hooks.example.com/x"}, format="json"
    )
    assert field_errors(refused) == {"email": ["a webhook channel takes a url, not an e-mail address"]}
    patched = owner.patch(
        CHANNELS + f"{channel.pk}/",
        {"kind": "webhook", "url": "https://hooks.example.com/x", "email": ""},
        format="json",
    )
    assert patched.status_code == 200, patched.content
    assert (patched.json()["kind"], patched.json()["url"]) == ("webhook", "https://hooks.example.com/x")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "http://127.0.0.1:{port}/hook",
            "the host '127.0.0.1' resolves to 127.0.0.1, a loopback address" + HINT,
        ),
        (
            "http://169.254.169.254/latest/meta-data/",
            "the host '169.254.169.254' resolves to 169.254.169.254, a link-local address" + HINT,
        ),
        ("http://[::1]:{port}/", "the host '::1' resolves to ::1, a loopback address" + HINT),
        (
            "http://2130706433:{port}/",
            "the host '2130706433' resolves to 127.0.0.1, a loopback address" + HINT,
        ),
        ("file:///etc/passwd", "must be an http or https URL, got 'file:///etc/passwd'"),
    ],
)
def test_a_webhook_into_the_network_is_refused_at_save(url, message, receiver, settings, project, owner):
    from control.models import NotificationChannel

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = []
    body = {"project": project.pk, "name": "inside", "kind": "webhook", "url": url.format(port=receiver.port)}
    response = owner.post(CHANNELS, body, format="json")
    assert field_errors(response) == {"url": [message]}
    assert response.json()["message"] == f"url: {message}"
    channel = _email(project)
    patched = owner.patch(
        CHANNELS + f"{channel.pk}/",
        {"kind": "webhook", "url": url.format(port=receiver.port), "email": ""},
        format="json",
    )
    assert field_errors(patched) == {"url": [message]}
    assert list(NotificationChannel.objects.values_list("kind", "url")) == [("email", "")]
    assert receiver.hits == []


BAD_BODIES = [
    ({"kind": "email", "email": "a@example.com"}, "name", "This field is required."),
    ({"name": "x", "email": "a@example.com"}, "kind", "This field is required."),
    ({"name": "x", "kind": "sms"}, "kind", '"sms" is not a valid choice.'),
    ({"name": "", "kind": "email", "email": "a@example.com"}, "name", "This field may not be blank."),
    ({"name": "   ", "kind": "email", "email": "a@example.com"}, "name", "This field may not be blank."),
    (
        {"name": "x" * 201, "kind": "email", "email": "a@example.com"},
        "name",
        "Ensure this field has no more than 200 characters.",
    ),
    ({"name": ["x"], "kind": "email", "email": "a@example.com"}, "name", "Not a valid string."),
    (
        {"name": "x\x00y", "kind": "email", "email": "a@example.com"},
        "name",
        "Null characters are not allowed.",
    ),
    ({"name": "x", "kind": "webhook"}, "url", "required: a webhook needs an http or https URL"),
    ({"name": "x", "kind": "webhook", "url": {"href": "x"}}, "url", "Not a valid string."),
    (
        {"name": "x", "kind": "webhook", "url": "javascript:alert(1)"},
        "url",
        "must be an http or https URL, got 'javascript:alert(1)'",
    ),
    (
        {"name": "x", "kind": "webhook", "url": "https://x.example.com/" + "a" * 1000},
        "url",
        "Ensure this field has no more than 1000 characters.",
    ),
    (
        {"name": "x", "kind": "webhook", "url": "https://hooks.example.com/\r\nX-Evil: 1"},
        "url",
        "must not contain spaces or control characters",
    ),
    ({"name": "x", "kind": "email"}, "email", "required: an e-mail channel needs an address"),
    ({"name": "x", "kind": "email", "email": "not-an-address"}, "email", "Enter a valid email address."),
    (
        {"name": "x", "kind": "email", "email": "a@example.com\r\nBcc: all@example.com"},
        "email",
        "Enter a valid email address.",
    ),
    ({"name": "x", "kind": "email", "email": 5}, "email", "Enter a valid email address."),
    (
        {"name": "x", "kind": "email", "email": "a@example.com", "url": "https://hooks.example.com/x"},
        "url",
        "an e-mail channel takes an e-mail address, not a url",
    ),
    (
        {"name": "x", "kind": "email", "email": "a@example.com", "enabled": "maybe"},
        "enabled",
        "Must be a valid boolean.",
    ),
    (
        {"name": "x", "kind": "email", "email": "a@example.com", "secret": "mine"},
        "secret",
        "unknown field; allowed fields are: email, enabled, kind, name, project, url",
    ),
]


@pytest.mark.parametrize(("body", "field", "message"), BAD_BODIES)
def test_bad_input_is_400_naming_the_field(body, field, message, project, owner):
    from control.models import NotificationChannel

    response = owner.post(CHANNELS, {"project": project.pk, **body}, format="json")
    assert field_errors(response) == {field: [message]}
    assert NotificationChannel.objects.count() == 0


@pytest.mark.parametrize(
    ("project_id", "message"),
    [
        ("x", "A valid integer is required."),
        (0, "Ensure this value is greater than or equal to 1."),
        (None, "This field may not be null."),
    ],
)
def test_a_bad_project_is_400(project_id, message, owner):
    body = {"project": project_id, "name": "x", "kind": "email", "email": "a@example.com"}
    assert field_errors(owner.post(CHANNELS, body, format="json")) == {"project": [message]}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"name": ""}, "name", "This field may not be blank."),
        ({"kind": "fax"}, "kind", '"fax" is not a valid choice.'),
        ({"email": ""}, "email", "required: an e-mail channel needs an address"),
        ({"enabled": None}, "enabled", "This field may not be null."),
        ({"project": 1}, "project", "unknown field; allowed fields are: email, enabled, kind, name, url"),
    ],
)
def test_a_bad_patch_is_400_and_changes_nothing(body, field, message, project, owner):
    channel = _email(project)
    response = owner.patch(CHANNELS + f"{channel.pk}/", body, format="json")
    assert field_errors(response) == {field: [message]}
    channel.refresh_from_db()
    assert (channel.name, channel.kind, channel.email, channel.enabled) == (
        "on call",
        "email",
        "oncall@example.com",
        True,
    )


@pytest.mark.parametrize(
    "name",
    ["<script>alert(1)</script>", "'; DROP TABLE control_notificationchannel; --", "on call 🚨 ☎", "%s%n{0}"],
)
def test_hostile_names_are_stored_verbatim(name, project, owner):
    body = {"project": project.pk, "name": name, "kind": "email", "email": "a@example.com"}
    created = owner.post(CHANNELS, body, format="json")
    assert created.status_code == 201, created.content
    assert owner.get(CHANNELS + f"{created.json()['id']}/").json()["name"] == name


def test_a_name_is_unique_in_a_project(project, owner, make_project, user):
    _email(project, name="on call")
    body = {"project": project.pk, "name": "on call", "kind": "email", "email": "b@example.com"}
    assert_error(
        owner.post(CHANNELS, body, format="json"),
        409,
        code="conflict",
        message="a notification channel named 'on call' already exists in this project",
    )
    elsewhere = make_project(user, "elsewhere")
    assert owner.post(CHANNELS, {**body, "project": elsewhere.pk}, format="json").status_code == 201


# ---- who may do what -----------------------------------------------------------------------


def _routes(channel_id: int) -> list[tuple[str, str, dict | None]]:
    return [
        ("get", CHANNELS + f"{channel_id}/", None),
        ("patch", CHANNELS + f"{channel_id}/", {"name": "renamed"}),
        ("delete", CHANNELS + f"{channel_id}/", None),
        ("post", CHANNELS + f"{channel_id}/test/", None),
        ("get", CHANNELS + f"{channel_id}/deliveries/", None),
    ]


def _call(client, method: str, path: str, body):
    call = getattr(client, method)
    return call(path) if body is None else call(path, body, format="json")


def test_unauthenticated_is_401(project, api_client):
    channel = _email(project)
    for method, path, body in [
        ("get", CHANNELS, None),
        ("post", CHANNELS, {"project": project.pk, "name": "x", "kind": "email", "email": "a@example.com"}),
        *_routes(channel.pk),
    ]:
        response = _call(api_client, method, path, body)
        assert_error(response, 401, code="not_authenticated")
    api_client.credentials(HTTP_AUTHORIZATION="Bearer tri_" + "A" * 43)
    assert_error(api_client.get(CHANNELS), 401, code="authentication_failed")


def test_a_run_scoped_token_is_403(project, run, run_client_for):
    channel = _email(project)
    client = run_client_for(run)
    for method, path, body in [("get", CHANNELS, None), *_routes(channel.pk)]:
        assert_error(_call(client, method, path, body), 403, code="permission_denied")


def test_another_projects_channel_is_404(project, other_user, client_for, enqueued):
    from control.models import AlertDelivery, NotificationChannel

    channel = _email(project)
    stranger = client_for(other_user)
    for method, path, body in _routes(channel.pk):
        body_ = assert_error(_call(stranger, method, path, body), 404, code="not_found")
        assert body_["message"] == (
            f"notification channel {channel.pk} does not exist or is not in one of your projects"
        )
    assert NotificationChannel.objects.get(pk=channel.pk).name == "on call"
    assert AlertDelivery.objects.count() == 0 and enqueued == []
    # Nor can it be created there, nor is it listed.
    body = {"project": project.pk, "name": "x", "kind": "email", "email": "a@example.com"}
    assert_error(
        stranger.post(CHANNELS, body, format="json"),
        404,
        message=f"project {project.pk} does not exist or you are not a member of it",
    )
    assert stranger.get(CHANNELS).json()["results"] == []
    assert stranger.get(CHANNELS, {"project": project.pk}).json()["results"] == []


def test_a_viewer_reads_but_cannot_write(project, viewer, client_for, enqueued):
    from control.models import AlertDelivery, NotificationChannel

    channel = _email(project)
    client = client_for(viewer)
    denied = f"you are a viewer of project {project.pk}; ask an owner for the member role"
    body = {"project": project.pk, "name": "x", "kind": "email", "email": "a@example.com"}
    assert_error(client.post(CHANNELS, body, format="json"), 403, code="permission_denied", message=denied)
    for method, path, body in _routes(channel.pk):
        response = _call(client, method, path, body)
        if method == "get":
            assert response.status_code == 200, response.content
        else:
            assert_error(response, 403, code="permission_denied", message=denied)
    listed = client.get(CHANNELS, {"project": project.pk}).json()["results"]
    assert [(c["id"], c["name"]) for c in listed] == [(channel.pk, "on call")]
    assert "secret" not in listed[0]
    assert list(NotificationChannel.objects.values_list("name", flat=True)) == ["on call"]
    assert AlertDelivery.objects.count() == 0 and enqueued == []


def test_a_member_writes(project, make_user, add_member, client_for):
    member = make_user("mia")
    add_member(project, member, "member")
    client = client_for(member)
    body = {"project": project.pk, "name": "x", "kind": "email", "email": "a@example.com"}
    created = client.post(CHANNELS, body, format="json")
    assert created.status_code == 201
    assert client.delete(CHANNELS + f"{created.json()['id']}/").status_code == 204


def test_a_bad_project_filter_is_400(owner):
    assert field_errors(owner.get(CHANNELS, {"project": "x"})) == {"project": ["must be an integer, got 'x'"]}

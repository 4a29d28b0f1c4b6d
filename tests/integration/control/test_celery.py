"""Celery tasks on a real worker over the real Redis broker (the app of control.celery).

Each test's worker consumes a queue of its own name, the app's default queue for the
test, so another test run on the same Redis can neither take these tasks nor feed
this worker its own.
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 30  # seconds a task may take before the test fails (a cold worker on a busy machine)


@pytest.fixture
def worker(celery_worker_queue):
    return celery_worker_queue


@pytest.fixture
def webhook():
    """A local HTTP endpoint standing in for a Slack incoming webhook; ``status`` sets its answer."""
    hits: list[dict] = []
    arrived = threading.Event()
    state = {"status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            hits.append(
                {
                    "path": self.path,
                    "content_type": self.headers.get("Content-Type"),
                    "headers": dict(self.headers),
                    "body": body,
                }
            )
            self.send_response(state["status"])
            self.end_headers()
            self.wfile.write(b"ok")
            arrived.set()

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(
            url=f"http://127.0.0.1:{server.server_port}/services/T000/B000/XXXX",
            hits=hits,
            arrived=arrived,
            state=state,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _webhook_channel(project, url: str):
    from control.services.notifications import channel_create

    return channel_create(project=project, user=project.created_by, name="slack", kind="webhook", url=url)


def _settled(delivery_ids: list[int]) -> dict[int, str]:
    """The deliveries' states once none is pending (the worker sends them after alert_deliver)."""
    from control.models import AlertDelivery

    deadline = time.monotonic() + WAIT
    while True:
        states = dict(AlertDelivery.objects.filter(pk__in=delivery_ids).values_list("pk", "state"))
        if "pending" not in states.values() or time.monotonic() > deadline:
            return states
        time.sleep(0.05)


def test_heartbeat_runs_on_the_worker(worker):
    from django.utils import timezone

    before = timezone.now()
    answer = worker.app.send_task("workers.tasks.heartbeat").get(timeout=WAIT)
    # The worker's clock, read after the task was sent: not earlier than the send (same machine).
    assert datetime.fromisoformat(answer) >= before


def test_housekeeping_purges_old_tokens_on_the_worker(worker, user):
    from django.utils import timezone

    from control.models import ApiToken
    from control.services.tokens import api_token_create

    now = timezone.now()
    for name, fields in {
        "live": {},
        "expired long ago": {"expires_at": now - timedelta(days=2)},
        "revoked long ago": {"revoked_at": now - timedelta(days=2)},
        "revoked just now": {"revoked_at": now},
    }.items():
        token, _ = api_token_create(user=user, name=name)
        ApiToken.objects.filter(pk=token.pk).update(**fields)
    assert worker.app.send_task("workers.tasks.housekeeping").get(timeout=WAIT) == {"tokens_purged": 2}
    assert sorted(ApiToken.objects.values_list("name", flat=True)) == ["live", "revoked just now"]


def test_a_fired_alert_is_delivered_to_the_webhook_by_the_worker(
    worker, webhook, settings, project, run, make_rule, ingest
):
    from control.models import Alert
    from control.services.notifications import webhook_payload, webhook_signature

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the test endpoint listens on loopback
    channel = _webhook_channel(project, webhook.url)
    make_rule(project, name="accuracy collapse", channels=[channel])
    # The ingest commits, then enqueues alert_deliver by name; the worker makes one delivery and
    # enqueues delivery_send, which posts to the webhook.
    ingest(run, (7, "reward/accuracy", "geo", 0.125))
    assert webhook.arrived.wait(WAIT), "the webhook was not called"
    alert = Alert.objects.select_related("rule", "run").get(run=run)
    assert len(webhook.hits) == 1
    hit = webhook.hits[0]
    assert hit["path"] == "/services/T000/B000/XXXX"
    assert hit["content_type"] == "application/json"
    assert json.loads(hit["body"]) == webhook_payload(alert)
    assert alert.message in json.loads(hit["body"])["text"]
    timestamp = hit["headers"]["X-Triune-Timestamp"]
    expected = webhook_signature(secret=channel.secret, timestamp=timestamp, body=hit["body"])
    assert hit["headers"]["X-Triune-Signature"] == expected
    [delivery] = alert.deliveries.all()
    assert _settled([delivery.pk]) == {delivery.pk: "sent"}


def test_alert_deliver_sends_to_every_channel(
    worker, webhook, settings, project, run, make_rule, ingest, mailoutbox
):
    from control.models import Alert, AlertDelivery
    from control.services.notifications import channel_create

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    hook = _webhook_channel(project, webhook.url)
    mail = channel_create(
        project=project, user=project.created_by, name="on call", kind="email", email="oncall@example.com"
    )
    make_rule(project, name="nan loss", channels=[hook, mail])
    with pytest.MonkeyPatch.context() as patch:  # deliver by hand below, not from the ingest
        patch.setattr("control.services.alerts.enqueue_task", lambda *args: None)
        ingest(run, (1, "reward/accuracy", "geo", 0.0))
    alert = Alert.objects.get(run=run)
    delivery_ids = worker.app.send_task("workers.tasks.alert_deliver", args=[alert.pk]).get(timeout=WAIT)
    assert sorted(AlertDelivery.objects.filter(pk__in=delivery_ids).values_list("channel_id", flat=True)) == [
        hook.pk,
        mail.pk,
    ]
    assert _settled(delivery_ids) == dict.fromkeys(delivery_ids, "sent")
    assert len(webhook.hits) == 1
    assert [(m.subject, m.to) for m in mailoutbox] == [("[Triune] warning nan loss", ["oncall@example.com"])]
    assert mailoutbox[0].body.startswith(alert.message + "\n")


def test_alert_deliver_of_a_missing_alert_does_nothing(worker):
    assert worker.app.send_task("workers.tasks.alert_deliver", args=[987654]).get(timeout=WAIT) == []


def test_a_failing_webhook_is_retried_then_fails(webhook, settings, project, run, make_rule, ingest):
    from control.models import Alert, AlertDelivery
    from control.services.notifications import alert_notify
    from workers.tasks import delivery_send_task

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    webhook.state["status"] = 500
    make_rule(project, name="r", channels=[_webhook_channel(project, webhook.url)])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("control.services.alerts.enqueue_task", lambda *args: None)
        patch.setattr("control.services.notifications.enqueue_task", lambda *args: None)
        ingest(run, (0, "reward/accuracy", "geo", 0.0))
        [delivery] = alert_notify(alert_id=Alert.objects.get(run=run).pk)
    # Run eagerly: retries happen at once instead of after their back-off.
    assert delivery_send_task.apply(args=[delivery.pk]).get() == "failed"
    assert len(webhook.hits) == 1 + delivery_send_task.max_retries
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts, delivery.last_error) == (
        "failed",
        1 + delivery_send_task.max_retries,
        "the webhook answered HTTP 500",
    )
    assert AlertDelivery.objects.filter(state="sent").count() == 0


def test_the_beat_schedule_names_registered_tasks():
    from control.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in app.conf.beat_schedule.values()}
    assert scheduled == {
        "workers.tasks.heartbeat",
        "workers.tasks.housekeeping",
        "workers.tasks.runs_reconcile",
    }
    assert scheduled <= set(app.tasks)


@pytest.mark.parametrize("entry", ["runs-reconcile", "housekeeping", "heartbeat"])
def test_a_beat_task_leaves_no_result_in_redis(entry: str, worker) -> None:
    """Beat sends the reconciler every 5 s: a stored result (kept a day) would be 17,280 keys a day
    that nobody reads, found growing in the load-and-soak bench."""
    scheduled = worker.app.conf.beat_schedule[entry]
    # As beat sends it: the entry's options go to send_task.
    sent = worker.app.send_task(scheduled["task"], **scheduled.get("options", {}))
    # The solo worker runs tasks in order: once this one answered, the scheduled one has run.
    worker.app.send_task("workers.tasks.heartbeat").get(timeout=WAIT)
    backend = worker.app.backend
    assert backend.get(backend.get_key_for_task(sent.id)) is None

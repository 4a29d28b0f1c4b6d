"""Celery tasks: fetch by id, call a service."""

from __future__ import annotations

import json
import logging
import urllib.request

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.utils import timezone

from control.models import Alert
from control.services.runs import run_reconcile, run_stop, run_submit, runs_reconcile_active
from control.services.tokens import api_tokens_purge_expired

logger = logging.getLogger(__name__)


@shared_task(name="workers.tasks.heartbeat")
def heartbeat() -> str:
    """Proves the beat → broker → worker path works; returns the worker's time."""
    return timezone.now().isoformat()


@shared_task(name="workers.tasks.housekeeping")
def housekeeping() -> dict:
    return {"tokens_purged": api_tokens_purge_expired()}


def slack_payload(alert: Alert) -> dict:
    """A Slack-compatible incoming-webhook body."""
    url = f"{settings.PUBLIC_URL}/runs/{alert.run_id}/"
    return {
        "text": f":rotating_light: {alert.message}",
        "attachments": [{"title": alert.run.name, "title_link": url}],
    }


@shared_task(
    name="workers.tasks.alert_deliver",
    autoretry_for=(OSError,),
    retry_backoff=True,
    max_retries=5,
)
def alert_deliver(alert_id: int) -> list[str]:
    """Deliver a fired alert to the channels of its rule (in-app needs nothing more)."""
    alert = Alert.objects.select_related("rule", "run").filter(pk=alert_id).first()
    if alert is None:
        return []
    delivered = ["in_app"]
    rule = alert.rule
    if rule.webhook_url:
        body = json.dumps(slack_payload(alert)).encode()
        request = urllib.request.Request(
            rule.webhook_url, data=body, headers={"Content-Type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - user-configured URL
            response.read(1024)
        delivered.append("webhook")
    if rule.email:
        send_mail(f"[Triune] {rule.name}", alert.message, None, [rule.email], fail_silently=False)
        delivered.append("email")
    return delivered


@shared_task(name="workers.tasks.run_submit")
def run_submit_task(run_id: int) -> str | None:
    """Submit a queued run to Ray; a redelivered task finds the job submitted and does nothing twice."""
    run = run_submit(run_id=run_id)
    return None if run is None else run.status


@shared_task(name="workers.tasks.run_stop")
def run_stop_task(run_id: int) -> str | None:
    """Ask Ray to stop the run's job, then record what Ray says."""
    run_stop(run_id=run_id)
    run = run_reconcile(run_id=run_id)
    return None if run is None else run.status


@shared_task(name="workers.tasks.runs_reconcile")
def runs_reconcile_task() -> dict[str, int]:
    """Beat: bring every active run in line with its Ray job."""
    return runs_reconcile_active()

"""Celery tasks: fetch by id, call a service."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

from control.models import AlertDelivery
from control.services.notifications import DeliveryError, alert_notify, delivery_send
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


# Back-off of a failed delivery: 2, 4, 8, 16, 32 s (capped), five retries after the first attempt.
DELIVERY_MAX_RETRIES = 5
DELIVERY_MAX_BACKOFF_S = 300


@shared_task(name="workers.tasks.alert_deliver")
def alert_deliver(alert_id: int) -> list[int]:
    """Deliver a fired alert to the enabled channels of its rule (in-app needs nothing more): one
    delivery each, sent by ``delivery_send``; returns their ids."""
    return [delivery.pk for delivery in alert_notify(alert_id=alert_id)]


@shared_task(name="workers.tasks.delivery_send", bind=True, max_retries=DELIVERY_MAX_RETRIES)
def delivery_send_task(self, delivery_id: int) -> str | None:
    """Send one delivery; a failure is retried with exponential back-off, and the delivery is
    marked failed after the last retry (or at once when retrying cannot help)."""
    retries = self.request.retries
    try:
        delivery = delivery_send(delivery_id=delivery_id, final=retries >= self.max_retries)
    except DeliveryError as exc:
        if exc.retry and retries < self.max_retries:
            raise self.retry(exc=exc, countdown=min(2 ** (retries + 1), DELIVERY_MAX_BACKOFF_S)) from exc
        return AlertDelivery.State.FAILED.value
    return None if delivery is None else delivery.state


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

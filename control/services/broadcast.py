from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)


def broadcast_to_run(run_id: int, event: dict) -> None:
    """Send an event to the websockets watching a run; a broken channel layer never fails the caller."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(f"run.{run_id}", event)
    except Exception:  # noqa: BLE001 - broadcasting is best effort; the page catches up on reconnect
        logger.exception("could not broadcast to run %s", run_id)


def enqueue_task(name: str, *args: object) -> None:
    """Send a Celery task by name, so the domain never imports its workers."""
    from control.celery import app

    try:
        app.send_task(name, args=list(args))
    except Exception:  # noqa: BLE001 - the beat reconciler picks up what was not enqueued
        logger.exception("could not enqueue %s%r", name, args)

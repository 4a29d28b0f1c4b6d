"""The Celery application; tasks live in ``workers``."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "control.settings")

app = Celery("triune")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.tasks",)
app.conf.broker_connection_timeout = 5
app.conf.task_publish_retry_policy = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5}
# Nobody reads what a periodic task returns: stored, each result would stay in Redis for a day
# (result_expires), 17,280 of them a day from the reconciler alone.
app.conf.beat_schedule = {
    "runs-reconcile": {
        "task": "workers.tasks.runs_reconcile",
        "schedule": float(os.environ.get("TRIUNE_RECONCILE_SECONDS", "5")),
        "options": {"expires": 30, "ignore_result": True},
    },
    "housekeeping": {
        "task": "workers.tasks.housekeeping",
        "schedule": 3600.0,
        "options": {"ignore_result": True},
    },
    "heartbeat": {"task": "workers.tasks.heartbeat", "schedule": 60.0, "options": {"ignore_result": True}},
}

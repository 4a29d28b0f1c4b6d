from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

from control.models.projects import Project
from control.models.runs import Run


def _webhook_secret() -> str:
    return secrets.token_urlsafe(32)


class NotificationChannel(models.Model):
    """Where a project's alerts are sent besides the page: a webhook (Slack-compatible JSON, signed
    with the channel's secret) or an e-mail address. In-app notification needs no channel."""

    class Kind(models.TextChoices):
        WEBHOOK = "webhook", "Webhook"
        EMAIL = "email", "E-mail"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="notification_channels")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    url = models.URLField(blank=True, max_length=1000, help_text="webhook URL (http or https)")
    email = models.EmailField(blank=True)
    secret = models.CharField(
        max_length=100, default=_webhook_secret, help_text="HMAC-SHA256 key of the webhook"
    )
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="notification_channel_unique_name")
        ]

    def __str__(self) -> str:
        return self.name


class AlertRule(models.Model):
    """A condition on a project's runs, evaluated per data source as points arrive (or by the beat
    for a stalled run, or on a run's change of state).

    Kinds and the fields they read:

    - ``threshold``: ``condition`` above/below ``threshold`` for ``window`` consecutive steps.
    - ``change``: ``condition`` drop/rise against the trailing ``window`` steps, after ``warmup``
      steps: by a fraction ``threshold`` of the trailing median (``change_by`` fraction), or by
      ``threshold`` robust deviations (``change_by`` mad: |x - median| / (1.4826 MAD)).
    - ``not_finite``: a NaN or infinite value (stored as null).
    - ``rate``: ``key`` / ``denominator_key`` at the same step, above/below ``threshold`` for
      ``window`` consecutive steps (``reward_errors / count`` > 0.01).
    - ``stall``: a running run reports no new point for ``stall_minutes``.
    - ``lifecycle``: the run reaches one of ``lifecycle_states``.

    ``key`` and ``source`` may end in ``*`` (every key or source with that prefix); an empty
    ``source`` is every source, the global one included. A rule on several sources applies to
    each on its own; on several keys, to each on its own too, or (``combine`` max) to the largest
    of them at each step: one series for the layers of a module. ``run_ids`` and ``run_tags``
    (tags of a run's data sources) narrow the runs.
    """

    class Kind(models.TextChoices):
        THRESHOLD = "threshold", "Threshold"
        CHANGE = "change", "Change against a trailing window"
        NOT_FINITE = "not_finite", "Non-finite value"
        RATE = "rate", "Rate of two keys"
        STALL = "stall", "Run stalled"
        LIFECYCLE = "lifecycle", "Run state"

    class Condition(models.TextChoices):
        ABOVE = "above", "value > threshold"
        BELOW = "below", "value < threshold"
        NOT_FINITE = "not_finite", "value is NaN or infinite"
        DROP = "drop", "value falls below its trailing median"
        RISE = "rise", "value rises above its trailing median"

    class ChangeBy(models.TextChoices):
        FRACTION = "fraction", "a fraction of the trailing median"
        MAD = "mad", "robust deviations (median/MAD)"

    class Combine(models.TextChoices):
        EACH = "each", "each matching key on its own"
        MAX = "max", "the largest of the matching keys at each step"

    class Severity(models.TextChoices):
        INFO = "info", "Info"
        WARNING = "warning", "Warning"
        ERROR = "error", "Error"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.THRESHOLD)
    key = models.CharField(
        max_length=200, blank=True, help_text="metric key or prefix*, e.g. reward/accuracy"
    )
    source = models.CharField(
        max_length=200, blank=True, help_text="data source or prefix*; empty = every source"
    )
    condition = models.CharField(max_length=16, choices=Condition.choices, default=Condition.ABOVE)
    threshold = models.FloatField(default=0.0)
    window = models.PositiveIntegerField(
        default=1, help_text="consecutive steps (threshold, rate); trailing steps (change)"
    )
    change_by = models.CharField(max_length=16, choices=ChangeBy.choices, default=ChangeBy.FRACTION)
    warmup = models.PositiveIntegerField(
        default=0, help_text="steps of a series before a change rule judges it"
    )
    combine = models.CharField(
        max_length=8,
        choices=Combine.choices,
        default=Combine.EACH,
        help_text="a key pattern: judge each key, or the largest of them (one series for a module's layers)",
    )
    denominator_key = models.CharField(max_length=200, blank=True, help_text="rate: the key divided by")
    stall_minutes = models.PositiveIntegerField(default=10)
    lifecycle_states = models.JSONField(default=list, blank=True, help_text="lifecycle: run states that fire")
    run_ids = models.JSONField(default=list, blank=True, help_text="only these runs (empty: every run)")
    run_tags = models.JSONField(default=list, blank=True, help_text="only runs with a source tagged so")
    severity = models.CharField(max_length=16, choices=Severity.choices, default=Severity.WARNING)
    cooldown_seconds = models.PositiveIntegerField(default=600)
    auto_resolve_steps = models.PositiveIntegerField(
        default=0,
        help_text="resolve a firing alert once the condition has been clear this many steps (0: by hand)",
    )
    channels = models.ManyToManyField(NotificationChannel, blank=True, related_name="rules")
    builtin = models.CharField(max_length=64, blank=True, help_text="the built-in default this rule is")
    enabled = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="alert_rule_unique_name")]

    def __str__(self) -> str:
        return self.name


class AlertState(models.Model):
    """The rolling state of one rule on one series of a run (what it needs of the past, e.g. the
    trailing window), so that each new point is judged without reading the series back, and a
    restarted web process neither forgets nor fires again."""

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="states")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alert_states")
    source = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=200, blank=True)
    state = models.JSONField(default=dict)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rule", "run", "source", "key"], name="alert_state_unique")
        ]


class Alert(models.Model):
    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    OPEN = (State.FIRING, State.ACKNOWLEDGED)

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alerts")
    source = models.CharField(max_length=200, blank=True)
    key = models.CharField(max_length=200, blank=True, help_text="the metric key that fired")
    severity = models.CharField(max_length=16, choices=AlertRule.Severity.choices, default="warning")
    state = models.CharField(max_length=16, choices=State.choices, default=State.FIRING, db_index=True)
    step = models.IntegerField()
    value = models.FloatField(null=True)
    message = models.TextField(max_length=2000)
    fired_at = models.DateTimeField(auto_now_add=True)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-fired_at", "-id"]
        constraints = [
            # De-duplication: at most one open alert per rule, run and source.
            models.UniqueConstraint(
                fields=["rule", "run", "source"],
                condition=models.Q(state__in=["firing", "acknowledged"]),
                name="alert_one_open_per_rule_run_source",
            )
        ]

    def __str__(self) -> str:
        return f"{self.rule} on {self.run} [{self.source or 'global'}]: {self.state}"


class AlertDelivery(models.Model):
    """One notification of an alert on one channel: sent, or failed after its retries."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        SENT = "sent", "Sent"
        FAILED = "failed", "Failed"

    alert = models.ForeignKey(
        Alert, on_delete=models.CASCADE, related_name="deliveries", null=True, blank=True
    )
    channel = models.ForeignKey(NotificationChannel, on_delete=models.CASCADE, related_name="deliveries")
    test = models.BooleanField(default=False, help_text="a test sent from the channel's page")
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

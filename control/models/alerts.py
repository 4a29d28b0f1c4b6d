from __future__ import annotations

from django.conf import settings
from django.db import models

from control.models.projects import Project
from control.models.runs import Run


class AlertRule(models.Model):
    """A threshold on a metric, evaluated per data source as points arrive."""

    class Condition(models.TextChoices):
        ABOVE = "above", "value > threshold"
        BELOW = "below", "value < threshold"
        NOT_FINITE = "not_finite", "value is NaN or infinite"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="alert_rules")
    name = models.CharField(max_length=200)
    key = models.CharField(max_length=200, help_text="metric key, e.g. reward/accuracy")
    source = models.CharField(max_length=200, blank=True, help_text="data source; empty = every source")
    condition = models.CharField(max_length=16, choices=Condition.choices)
    threshold = models.FloatField(default=0.0)
    window = models.PositiveIntegerField(default=1, help_text="consecutive steps the condition must hold")
    cooldown_seconds = models.PositiveIntegerField(default=600)
    webhook_url = models.URLField(blank=True, max_length=1000)
    email = models.EmailField(blank=True)
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


class Alert(models.Model):
    class State(models.TextChoices):
        FIRING = "firing", "Firing"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    OPEN = (State.FIRING, State.ACKNOWLEDGED)

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="alerts")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="alerts")
    source = models.CharField(max_length=200, blank=True)
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

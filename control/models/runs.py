from __future__ import annotations

from django.conf import settings
from django.db import models

from control.models.data import DataSource
from control.models.projects import Project


class Run(models.Model):
    """One training run: sources with weights, model, hyper-parameters and a compute target."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        SUBMITTED = "submitted", "Submitted"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLING = "cancelling", "Cancelling"
        CANCELLED = "cancelled", "Cancelled"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="runs")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING, db_index=True)
    preset = models.CharField(max_length=64, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="hyper-parameters over the preset")
    compute_target = models.CharField(max_length=200, default="local")
    total_steps = models.PositiveIntegerField(default=0)
    last_step = models.IntegerField(default=-1)
    ray_submission_id = models.CharField(max_length=128, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    sources = models.ManyToManyField(DataSource, through="RunSource", related_name="runs")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["project", "-created_at"], name="run_project_created")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class RunSource(models.Model):
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="run_sources")
    data_source = models.ForeignKey(DataSource, on_delete=models.PROTECT, related_name="run_sources")
    weight = models.FloatField(default=1.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "data_source"], name="run_source_unique"),
            models.CheckConstraint(condition=models.Q(weight__gt=0), name="run_source_weight_positive"),
        ]

from __future__ import annotations

from django.conf import settings
from django.db import models

from control.models.data import DataSource
from control.models.projects import Project


class Run(models.Model):
    """One training run: sources with weights, model, hyper-parameters and a compute target."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        QUEUED = "queued", "Queued"
        SUBMITTED = "submitted", "Submitted"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLING = "cancelling", "Cancelling"
        CANCELLED = "cancelled", "Cancelled"
        LOST = "lost", "Lost"

    TERMINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED, Status.LOST)
    # States in which a Ray job of the current attempt may exist: the reconciler watches these.
    ACTIVE = (Status.SUBMITTED, Status.RUNNING, Status.CANCELLING)

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
    num_cpus = models.FloatField(default=1.0, help_text="CPUs reserved for the job's entrypoint")
    num_gpus = models.FloatField(default=0.0, help_text="GPUs reserved for the job's entrypoint")
    total_steps = models.PositiveIntegerField(default=0)
    last_step = models.IntegerField(default=-1)
    last_metric_at = models.DateTimeField(null=True, blank=True, help_text="when a point last arrived")
    attempt = models.PositiveIntegerField(default=0, help_text="1 for the first submission, +1 per resume")
    resumed_from_step = models.IntegerField(null=True, blank=True)
    attempt_started_step = models.IntegerField(
        default=-1, help_text="last_step when the current attempt started running (for the ETA)"
    )
    ray_submission_id = models.CharField(max_length=128, blank=True)
    spec_uri = models.CharField(max_length=1000, blank=True)
    cloned_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="clones"
    )
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    attempt_started_at = models.DateTimeField(null=True, blank=True)
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


class RunEvent(models.Model):
    """One state transition of a run: when, from what, to what, why, in which attempt."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(auto_now_add=True)
    from_status = models.CharField(max_length=16)
    to_status = models.CharField(max_length=16)
    reason = models.TextField(blank=True, max_length=5000)
    attempt = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["run", "at"], name="run_event_run_at")]


class RunArtifact(models.Model):
    """A file or folder a run produced: checkpoints, the exported policy, the job's log, its spec."""

    class Kind(models.TextChoices):
        CHECKPOINT = "checkpoint", "Checkpoint"
        POLICY = "policy", "Exported policy"
        LOG = "log", "Job log"
        SPEC = "spec", "Run spec"

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="artifacts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    step = models.IntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    uri = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["kind", "step", "id"]
        constraints = [models.UniqueConstraint(fields=["run", "uri"], name="run_artifact_unique_uri")]

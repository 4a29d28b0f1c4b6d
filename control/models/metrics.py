from __future__ import annotations

from django.db import models

from control.models.runs import Run

# The data source of a global metric (actor/*, perf/*, detection/iou_threshold).
GLOBAL_SOURCE = ""


class MetricPoint(models.Model):
    """One value of one metric of one data source at one step.

    Append-mostly and read as a series per (run, key, source): the unique
    constraint on (run, key, source, step) is both the idempotency key of ingest
    and the index a series read walks in step order.
    """

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_points")
    step = models.IntegerField()
    source = models.CharField(max_length=200, blank=True, default=GLOBAL_SOURCE)
    key = models.CharField(max_length=200)
    value = models.FloatField(null=True, help_text="null for a non-finite value (NaN or infinity)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "key", "source", "step"], name="metric_point_unique"),
        ]
        indexes = [models.Index(fields=["run", "step"], name="metric_point_run_step")]

    def __str__(self) -> str:
        return f"{self.key}[{self.source or 'global'}]@{self.step}={self.value}"

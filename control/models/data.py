from __future__ import annotations

from django.conf import settings
from django.db import models

from control.models.projects import Project


class Tag(models.Model):
    """A free-form label on data sources, unique per project."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)
    color = models.CharField(max_length=7, default="#6c757d")

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="tag_unique_name")]

    def __str__(self) -> str:
        return self.name


class Dataset(models.Model):
    """A named collection of uploads; each upload is an immutable DatasetVersion."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="datasets")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=5000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["project", "name"], name="dataset_unique_name")]

    def __str__(self) -> str:
        return self.name


class DatasetVersion(models.Model):
    """An immutable, content-addressed upload of a dataset."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content_hash = models.CharField(max_length=64, help_text="sha256 of the uploaded bytes")
    storage_uri = models.CharField(max_length=1000)
    size_bytes = models.BigIntegerField(default=0)
    sample_count = models.PositiveIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["dataset", "number"], name="version_unique_number"),
            models.UniqueConstraint(fields=["dataset", "content_hash"], name="version_unique_hash"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} v{self.number}"


class DataSource(models.Model):
    """One distinct ``data_source`` value of a dataset version; runs mix these by weight."""

    class TaskType(models.TextChoices):
        MATH = "math", "Math"
        PUZZLE = "puzzle", "Puzzle"
        SCIENCE = "science", "Science"
        CHART = "chart", "Chart"
        OCR = "ocr", "OCR"
        COUNTING = "counting", "Counting"
        DETECTION = "detection", "Detection"
        GROUNDING = "grounding", "Grounding"
        OTHER = "other", "Other"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="data_sources")
    dataset_version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="sources")
    name = models.CharField(max_length=200)
    task_type = models.CharField(max_length=16, choices=TaskType.choices, default=TaskType.OTHER)
    verifier = models.CharField(max_length=64)
    train_count = models.PositiveIntegerField(default=0)
    test_count = models.PositiveIntegerField(default=0)
    description = models.TextField(blank=True, max_length=5000)
    tags = models.ManyToManyField(Tag, blank=True, related_name="sources")
    stats = models.JSONField(default=dict, blank=True)
    files = models.JSONField(default=dict, blank=True, help_text='{"train": [uri, ...], "test": [uri, ...]}')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(fields=["dataset_version", "name"], name="source_unique_per_version")
        ]
        indexes = [models.Index(fields=["project", "task_type"], name="source_project_task")]

    def __str__(self) -> str:
        return self.name

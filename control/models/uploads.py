from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models

from control.models.projects import Project


class Upload(models.Model):
    """A file received in chunks (resumable), later consumed by a dataset version.

    The bytes live in the staging area of storage; ``received`` is the offset the
    next chunk must start at, so an interrupted upload resumes where it stopped.
    """

    class Status(models.TextChoices):
        RECEIVING = "receiving", "Receiving"
        COMPLETE = "complete", "Complete"
        CONSUMED = "consumed", "Consumed"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="uploads")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    filename = models.CharField(max_length=255)
    size = models.BigIntegerField()
    received = models.BigIntegerField(default=0)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVING)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(received__lte=models.F("size")), name="upload_received_le_size"
            )
        ]

    def __str__(self) -> str:
        return f"{self.filename} ({self.received}/{self.size})"

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models

from control.models.runs import Run

TOKEN_PREFIX_LENGTH = 8


def hash_token(raw: str) -> str:
    """Tokens are stored as sha256 digests; the raw token is shown once at creation."""
    return hashlib.sha256(raw.encode("utf-8")).hexdigest()


class ApiToken(models.Model):
    """A bearer token: per user for automation, or run-scoped for a training job.

    A run-scoped token may only write metrics and artifacts of its own run.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, null=True, blank=True, related_name="tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=TOKEN_PREFIX_LENGTH)
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_run_scoped(self) -> bool:
        return self.run_id is not None

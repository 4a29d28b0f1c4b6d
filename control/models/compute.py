from __future__ import annotations

from django.db import models


class ComputeTarget(models.Model):
    """A Ray cluster runs are submitted to through its Jobs API; managed by admins.

    ``local`` is the platform's own Ray head (``./triune up``): its address is empty here and
    comes from the environment (``TRIUNE_RAY_JOBS_URL`` or ``RAY_ADDRESS``). A token is never
    stored: ``auth_token_env`` names the environment variable of the web and worker processes
    that holds it.
    """

    LOCAL = "local"

    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True, max_length=2000)
    address = models.CharField(
        max_length=500, blank=True, help_text="Ray Jobs API URL (http://head:8265); empty = local"
    )
    auth_token_env = models.CharField(
        max_length=100, blank=True, help_text="environment variable holding the cluster's Ray auth token"
    )
    resources = models.JSONField(default=dict, blank=True, help_text='what it offers: {"CPU": 8, "GPU": 2}')
    runtime_env = models.JSONField(default=dict, blank=True, help_text="default Ray runtime_env of its jobs")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_local(self) -> bool:
        return not self.address

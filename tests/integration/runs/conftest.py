"""The platform as a Ray job sees it: a live server, a real Celery worker and the session's Ray
head (the ``ray_head`` fixture of tests/conftest.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests.ray_head import RayHead  # noqa: F401 - tests import it from here


@pytest.fixture
def platform(ray_head, live_server, settings, storage_root, celery_worker_queue):
    """The platform as a job sees it: its URL, the local target on the test's Ray head, storage."""
    settings.TRIUNE_RAY_JOBS_URL = ray_head.url
    settings.RAY_AUTH_TOKEN_PATH = str(ray_head.token_path)
    settings.PUBLIC_URL = live_server.url
    settings.TRIUNE_JOB_PLATFORM_URL = live_server.url
    settings.ALLOWED_HOSTS = ["*"]
    return SimpleNamespace(url=live_server.url, ray=ray_head, storage=storage_root)

"""Shared fixtures: small factories for users, projects, sources and API clients.

Control-plane tests run against the real PostgreSQL and Redis (DATABASE_URL and
REDIS_URL, set by ``./triune test``); unit tests of pure code need nothing.
"""

from __future__ import annotations

import itertools

import pytest

_counter = itertools.count(1)


@pytest.fixture
def make_user(db):
    from django.contrib.auth import get_user_model

    def make(username: str | None = None, password: str = "pw-for-tests-123", **extra):
        name = username or f"user{next(_counter)}"
        return get_user_model().objects.create_user(username=name, password=password, **extra)

    return make


@pytest.fixture
def user(make_user):
    return make_user("alice")


@pytest.fixture
def other_user(make_user):
    return make_user("mallory")


@pytest.fixture
def make_project(db):
    from control.services.projects import project_create

    def make(owner, name: str | None = None):
        return project_create(user=owner, name=name or f"project {next(_counter)}")

    return make


@pytest.fixture
def project(make_project, user):
    return make_project(user, "vision rl")


@pytest.fixture
def make_source(db):
    from control.models import Dataset, DatasetVersion, DataSource

    def make(project, name: str = "synth_math", verifier: str = "mathverify", task_type: str = "math"):
        dataset, _ = Dataset.objects.get_or_create(project=project, name=f"ds-{project.pk}")
        version, _ = DatasetVersion.objects.get_or_create(
            dataset=dataset,
            number=1,
            defaults={"content_hash": f"{project.pk:064d}", "storage_uri": "file:///tmp/none"},
        )
        return DataSource.objects.create(
            project=project,
            dataset_version=version,
            name=name,
            verifier=verifier,
            task_type=task_type,
            train_count=10,
            test_count=2,
        )

    return make


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client_for(db):
    """An API client authenticated with a fresh bearer token of ``user``."""
    from rest_framework.test import APIClient

    from control.services.tokens import api_token_create

    def make(user):
        _, raw = api_token_create(user=user, name="tests")
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make

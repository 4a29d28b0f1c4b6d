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
        return project_create(user=owner, name=name or f"project {next(_counter)}", default_alerts=False)

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


@pytest.fixture
def add_member(db):
    """Add ``user`` to ``project`` with ``role`` (owner, member or viewer)."""
    from control.services.projects import project_member_set

    def add(project, user, role: str = "member"):
        return project_member_set(project=project, username=user.username, role=role)

    return add


@pytest.fixture
def viewer(make_user, add_member, project):
    """A user who may read ``project`` but not write to it."""
    person = make_user("victor")
    add_member(project, person, "viewer")
    return person


@pytest.fixture
def make_run(db, make_source):
    """A pending run of ``project`` over ``sources`` (one fresh source when none is given)."""
    from control.services.runs import SourceWeight, run_create

    def make(project, *, user=None, sources=None, name: str | None = None, total_steps: int = 10):
        sources = sources or [make_source(project, name=f"src_{next(_counter)}")]
        return run_create(
            project=project,
            user=user or project.created_by,
            name=name or f"run {next(_counter)}",
            sources=[SourceWeight(source, 1.0) for source in sources],
            total_steps=total_steps,
        )

    return make


@pytest.fixture
def run(make_run, project):
    return make_run(project)


@pytest.fixture
def run_client_for(db):
    """An API client authenticated with a run-scoped token, as a training job holds."""
    from rest_framework.test import APIClient

    from control.services.tokens import api_token_create

    def make(run):
        _, raw = api_token_create(user=run.created_by, name=f"run {run.pk}", run=run)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def make_rule(db):
    """An enabled alert rule of ``project``; fields override the defaults (reward/accuracy below 0.5)."""
    from control.services.alerts import alert_rule_create

    def make(project, **fields):
        values = {
            "name": f"rule {next(_counter)}",
            "key": "reward/accuracy",
            "source": "",
            "condition": "below",
            "threshold": 0.5,
            "window": 1,
            "cooldown_seconds": 0,
        }
        values.update(fields)
        return alert_rule_create(project=project, user=project.created_by, **values)

    return make


@pytest.fixture
def ingest(db):
    """Ingest points through the service: ``ingest(run, (step, key, source, value), ...)``."""
    from control.services.metrics import PointIn, metric_points_ingest

    def do(run, *points):
        return metric_points_ingest(
            run=run, points=[PointIn(step=s, key=k, source=src, value=v) for s, k, src, v in points]
        )

    return do


@pytest.fixture
def storage_root(settings, tmp_path):
    """A storage folder of this test (STORAGE_URL points at it)."""
    root = tmp_path / "storage"
    root.mkdir()
    settings.STORAGE_URL = root.as_uri()
    return root


@pytest.fixture(scope="session")
def synth_files(tmp_path_factory):
    """Synthetic parquet files of the eight tasks (small), generated once per test session."""
    from trainer.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("synth")
    generate_dataset(str(out), per_source=16, image_size=56, test_fraction=0.25)
    return out


@pytest.fixture
def demo_sources(db, project, storage_root, synth_files):
    """The eight synthetic sources of ``project`` with real data files in storage, by name."""
    from pathlib import Path

    from control.services.datasets import dataset_version_create
    from control.services.ingest import StagedFile

    files = [StagedFile(p.name, p) for p in sorted(Path(synth_files).glob("*.parquet"))]
    outcome = dataset_version_create(
        project=project, user=project.created_by, name="synthetic", description="", files=files
    )
    return {source.name: source for source in outcome.version.sources.all()}


@pytest.fixture
def celery_worker_queue():
    """A real Celery worker (solo pool, in a thread) on a queue of this test's own."""
    import uuid
    from types import SimpleNamespace

    import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping for the start-up check
    from celery.contrib.testing.worker import start_worker

    from control.celery import app

    queue = f"triune-test-{uuid.uuid4().hex}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    try:
        with start_worker(app, pool="solo", concurrency=1, queues=[queue], loglevel="WARNING") as worker:
            yield SimpleNamespace(app=app, queue=queue, worker=worker)
    finally:
        app.conf.task_default_queue = previous


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3-compatible server on this machine (moto's), for outputs and storage on s3:// URIs."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="session")
def ray_head():
    """A Ray head of this test session on loopback (2 CPUs), started by the first test that asks."""
    from tests.ray_head import RayHead

    head = RayHead(num_cpus=2)
    yield head
    head.stop()

"""Schemathesis over the API's own OpenAPI schema: every operation, authenticated, never a 5xx.

The schema is the one the app serves at ``/api/schema/`` (drf-spectacular); each operation is a
test of its own, with a fresh project of the token's owner (a staff user, so that compute targets
can be changed too): a dataset with real sample files, a run over two of its sources, a tag, an
alert rule and the alert it fired, a notification channel, an upload, a checkpoint artifact, a
second API token and a run token. Requests go through the WSGI app in the test's thread, so they
see (and roll back with) the test's database transaction.

Per operation, two phases, both deterministic so that a run is repeatable: the coverage phase (a
finite set of cases the schema defines: each field's boundaries, a missing required field, a
value of the wrong type, an unsupported method, ...) and ``EXAMPLES`` cases drawn by Hypothesis,
valid and invalid, with a fixed seed. Three cases in four have their object ids (in the path, the
query and the body) replaced by the project's own, so that the endpoints' real work is exercised,
not only their 404s. Every response must be a non-5xx, with a status code, content type and body
the schema documents.

Nothing is excluded. Tasks that would go to Celery once the transaction commits (a run's submission
to Ray, alert deliveries, a channel's test message) are recorded instead of sent: each case runs the
on-commit callbacks, and the launch operation must have queued the run's submission.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from control.services.launch import SUBMIT_TASK
from control.wsgi import application

EXAMPLES = 25  # drawn cases per operation, valid and invalid together

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": 17,
        "generation": {"mode": "all", "max-examples": EXAMPLES, "deterministic": True, "database": "none"},
        # Stateful sequences need links between operations, which the schema does not declare.
        "phases": {"coverage": {"enabled": True}, "stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_wsgi("/api/schema/", application, config=CONFIG)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def fuzz_world(db, user, project, demo_sources, make_run, make_rule, ingest, storage_root):
    """The objects of ``project`` the fuzzed requests name, by the parameter names of the schema."""
    from control.models import Alert, ComputeTarget, RunArtifact, Tag
    from control.services.datasets import upload_create
    from control.services.notifications import channel_create
    from control.services.tokens import api_token_create

    user.is_staff = True  # compute targets are the staff's to change
    user.save(update_fields=["is_staff"])
    sources = [demo_sources["synth_math"], demo_sources["synth_detection"]]
    run = make_run(project, sources=sources)
    tag = Tag.objects.create(project=project, name="reasoning")
    rule = make_rule(project, name="accuracy collapse")
    ingest(run, (0, "reward/accuracy", "synth_math", 0.1))  # 0.1 < 0.5 fires the rule
    alert = Alert.objects.get(run=run)
    channel = channel_create(project=project, user=user, name="on call", kind="email", email="a@example.com")
    upload = upload_create(project=project, user=user, filename="more.jsonl", size=4)
    laptop, _ = api_token_create(user=user, name="laptop")
    run_token, _ = api_token_create(user=user, name=f"run {run.pk} attempt 1", run=run)
    checkpoint = Path(storage_root) / "checkpoint-3"  # a folder: downloaded as a .tar.gz
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    artifact = RunArtifact.objects.create(run=run, kind="checkpoint", step=3, uri=checkpoint.as_uri())
    _, raw = api_token_create(user=user, name="fuzzing")
    source = sources[0]
    return {
        "token": raw,
        "path": {
            "project_id": project.pk,
            "dataset_id": source.dataset_version.dataset_id,
            "source_id": source.pk,
            "tag_id": tag.pk,
            "run_id": run.pk,
            "rule_id": rule.pk,
            "alert_id": alert.pk,
            "channel_id": channel.pk,
            "target_id": ComputeTarget.objects.get(name="local").pk,
            "upload_id": str(upload.pk),
            "artifact_id": artifact.pk,
            "split": "train",
            "index": 0,
            "image": 0,
        },
        "token_ids": {"tokens": laptop.pk, "run-tokens": run_token.pk},
        "query": {"project": project.pk, "run": run.pk, "runs": str(run.pk), "tag": tag.pk},
        "body": {"project": project.pk, "data_source": source.pk, "run": run.pk},
    }


@pytest.fixture
def connection_kept():
    """The WSGI handler closes the database connection after each request, and with it the test's
    transaction: keep it open, as Django's test client does."""
    from django.core import signals
    from django.db import close_old_connections

    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def examples() -> itertools.count:
    """The examples of one operation, counted."""
    return itertools.count()


@pytest.fixture
def enqueued(monkeypatch, request, fuzz_world):
    """Tasks sent by name once a transaction commits, recorded instead of sent to the broker."""
    calls: list[tuple] = []
    for module in ("runs", "alerts", "notifications"):
        monkeypatch.setattr(f"control.services.{module}.enqueue_task", lambda *args: calls.append(args))
    yield calls
    if request.node.name.endswith("[POST /api/v1/runs/{run_id}/launch/]"):
        # The project's pending run was launched: its submission was queued (and not sent to Ray).
        assert (SUBMIT_TASK, fuzz_world["path"]["run_id"]) in calls


def _ours(case, world: dict) -> None:
    """Name the project's own objects in ``case``'s path, query and body."""
    for name in case.path_parameters or {}:
        if name == "token_id":
            kind = "run-tokens" if "run_id" in case.path_parameters else "tokens"
            case.path_parameters[name] = world["token_ids"][kind]
        elif name in world["path"]:
            case.path_parameters[name] = world["path"][name]
    for name in case.query or {}:
        if name in world["query"]:
            case.query[name] = world["query"][name]
    _ours_body(case.body, world["body"])


def _ours_body(body, ids: dict) -> None:
    if isinstance(body, dict):
        for name, value in body.items():
            if name in ids and isinstance(value, int) and not isinstance(value, bool):
                body[name] = ids[name]
            else:
                _ours_body(value, ids)
    elif isinstance(body, list):
        for item in body:
            _ours_body(item, ids)


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
def test_api_fuzz(case, fuzz_world, connection_kept, examples, enqueued, django_capture_on_commit_callbacks):
    if next(examples) % 4:
        _ours(case, fuzz_world)
    with django_capture_on_commit_callbacks(execute=True):
        case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_world['token']}"}, checks=CHECKS)

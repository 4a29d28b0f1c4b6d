"""The control app's migrations applied to a populated database: the schema is taken back to the first
migration, rows are written with the models of that time, and migrating forward to the latest keeps
every row and fills what the data migrations should (the ``local`` compute target; rule kinds and
notification channels from the old per-rule webhook and e-mail fields)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

EARLY = [("control", "0001_initial")]


def _migrate(targets):
    """Migrate to ``targets`` and return the historical apps registry of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    executor.loader.build_graph()
    return executor.loader.project_state(targets).apps


def _latest():
    return MigrationExecutor(connection).loader.graph.leaf_nodes()


def _populate(apps) -> dict[str, int]:
    User = apps.get_model("auth", "User")
    Project = apps.get_model("control", "Project")
    ProjectMembership = apps.get_model("control", "ProjectMembership")
    Dataset = apps.get_model("control", "Dataset")
    DatasetVersion = apps.get_model("control", "DatasetVersion")
    DataSource = apps.get_model("control", "DataSource")
    Run = apps.get_model("control", "Run")
    RunSource = apps.get_model("control", "RunSource")
    MetricPoint = apps.get_model("control", "MetricPoint")
    AlertRule = apps.get_model("control", "AlertRule")
    Alert = apps.get_model("control", "Alert")

    owner = User.objects.create(username="olivia", password="!")
    project = Project.objects.create(name="vision rl", slug="vision-rl", created_by=owner)
    ProjectMembership.objects.create(project=project, user=owner, role="owner")
    dataset = Dataset.objects.create(project=project, name="orsta", created_by=owner)
    version = DatasetVersion.objects.create(
        dataset=dataset, number=1, content_hash="a" * 64, storage_uri="file:///srv/storage/datasets/1"
    )
    source = DataSource.objects.create(
        project=project, dataset_version=version, name="mm_math", task_type="math", verifier="mathverify"
    )
    run = Run.objects.create(project=project, name="grpo 1", status="running", last_step=2, created_by=owner)
    RunSource.objects.create(run=run, data_source=source, weight=1.0)
    MetricPoint.objects.bulk_create(
        MetricPoint(run=run, step=step, source="mm_math", key="reward/accuracy", value=value)
        for step, value in ((0, 0.25), (1, 0.5), (2, None))
    )
    nan_rule = AlertRule.objects.create(
        project=project,
        name="loss went NaN",
        key="actor/pg_loss",
        condition="not_finite",
        webhook_url="https://hooks.example.com/triune",
        created_by=owner,
    )
    low_rule = AlertRule.objects.create(
        project=project,
        name="accuracy collapse",
        key="reward/accuracy",
        condition="below",
        threshold=0.3,
        email="oncall@example.com",
        created_by=owner,
    )
    Alert.objects.create(rule=low_rule, run=run, source="mm_math", step=0, value=0.25, message="0.25 < 0.3")
    return {"project": project.pk, "run": run.pk, "nan_rule": nan_rule.pk, "low_rule": low_rule.pk}


def test_migrating_a_populated_database_forward_keeps_its_rows_and_fills_new_fields():
    latest = _latest()
    try:
        ids = _populate(_migrate(EARLY))
        apps = _migrate(latest)
    finally:
        # Whatever happened, leave the schema at the latest migrations for the tests after this one.
        _migrate(latest)

    Project = apps.get_model("control", "Project")
    Run = apps.get_model("control", "Run")
    MetricPoint = apps.get_model("control", "MetricPoint")
    AlertRule = apps.get_model("control", "AlertRule")
    Alert = apps.get_model("control", "Alert")
    DataSource = apps.get_model("control", "DataSource")
    ComputeTarget = apps.get_model("control", "ComputeTarget")

    assert Project.objects.get(pk=ids["project"]).name == "vision rl"
    run = Run.objects.get(pk=ids["run"])
    # Fields added after 0001 take their defaults on an existing run.
    assert (run.status, run.last_step, run.attempt, run.num_cpus, run.spec_uri) == ("running", 2, 0, 1.0, "")
    assert run.last_metric_at is None
    assert list(MetricPoint.objects.filter(run=run).order_by("step").values_list("step", "value")) == [
        (0, 0.25),
        (1, 0.5),
        (2, None),
    ]
    assert DataSource.objects.get(name="mm_math").files == {}
    # 0003 creates the local compute target that runs name by default.
    assert ComputeTarget.objects.filter(name="local").count() == 1

    # 0004: a not_finite condition becomes the not_finite kind; webhook and e-mail become channels.
    nan_rule, low_rule = AlertRule.objects.get(pk=ids["nan_rule"]), AlertRule.objects.get(pk=ids["low_rule"])
    assert (nan_rule.kind, low_rule.kind) == ("not_finite", "threshold")
    assert [(c.name, c.kind, c.url) for c in nan_rule.channels.all()] == [
        ("loss went NaN (webhook)", "webhook", "https://hooks.example.com/triune")
    ]
    assert [(c.name, c.kind, c.email) for c in low_rule.channels.all()] == [
        ("accuracy collapse (email)", "email", "oncall@example.com")
    ]
    alert = Alert.objects.get(rule=low_rule)
    assert (alert.state, alert.value, alert.severity, alert.key) == ("firing", 0.25, "warning", "")

"""One fault-injection platform (:class:`Stack`) per test module, and a run to report to it."""

from __future__ import annotations

import secrets

import pytest

from tests.integration.faults.stack import Stack

SEED_RUN = """
from django.contrib.auth import get_user_model
from control.models import Dataset, DatasetVersion, DataSource, Run
from control.services.projects import project_create
from control.services.runs import SourceWeight, run_create
from control.services.tokens import api_token_create

user = get_user_model().objects.create_user(username={username!r}, password={password!r})
project = project_create(user=user, name="faults " + {username!r}, default_alerts=False)
dataset = Dataset.objects.create(project=project, name="synthetic")
version = DatasetVersion.objects.create(
    dataset=dataset, number=1, content_hash="0" * 64, storage_uri="file:///nonexistent"
)
source = DataSource.objects.create(
    project=project, dataset_version=version, name="synth_math", verifier="mathverify",
    task_type="math", train_count=10, test_count=2,
)
run = run_create(
    project=project, user=user, name="under fault", sources=[SourceWeight(source, 1.0)], total_steps=1000
)
Run.objects.filter(pk=run.pk).update(status="submitted", attempt=1, ray_submission_id="faults")
_, run_token = api_token_create(user=user, name="run", run=run)
_, user_token = api_token_create(user=user, name="owner")
result = {{"run": run.pk, "project": project.pk, "run_token": run_token, "user_token": user_token,
          "username": user.username, "password": {password!r}}}
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    platform = Stack(tmp_path_factory.mktemp("faults", numbered=True))
    try:
        yield platform.start()
    finally:
        platform.stop()


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium through Playwright, as the browser tests launch it."""
    from tests.e2e.conftest import _launch, require_chromium

    require_chromium()
    yield from _launch()


@pytest.fixture
def seeded(stack):
    """A user, a project, a submitted run of 1,000 steps and its run token, in the stack's database."""
    code = SEED_RUN.format(
        username=f"u{secrets.token_hex(4)}", password="pw-for-faults-" + secrets.token_hex(4)
    )
    return stack.django(code)


def count_points(stack: Stack, run_id: int) -> dict:
    """``{"count": n, "steps": [...distinct steps], "sum": total value}`` of a run's stored points."""
    return stack.django(
        "from django.db.models import Count, Sum\n"
        "from control.models import MetricPoint\n"
        f"rows = MetricPoint.objects.filter(run_id={int(run_id)})\n"
        "result = {'count': rows.count(), 'steps': sorted(set(rows.values_list('step', flat=True))),"
        " 'sum': rows.aggregate(s=Sum('value'))['s']}"
    )

"""Runs through the REST API: create with a source mixture, read, list, cancel."""

from __future__ import annotations

import pytest

from tests.integration.control.helpers import assert_error

pytestmark = pytest.mark.django_db

API = "/api/v1/"


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


def _body(project, *sources, **extra):
    """A draft run (``launch: false``): these sources have no files, so a launch would be refused."""
    return {
        "project": project.pk,
        "name": "orsta 7b",
        "sources": [{"data_source": s.pk, "weight": w} for s, w in sources],
        "launch": False,
        **extra,
    }


def test_a_run_is_created_pending_with_its_mixture(project, make_source, owner, user):
    from control.models import Run

    geo, chart = make_source(project, name="geo"), make_source(project, name="chart")
    body = _body(project, (geo, 2.0), (chart, 0.5), config={"lr": 1e-6, "rollout": {"n": 8}}, total_steps=30)
    response = owner.post(API + "runs/", body, format="json")
    assert response.status_code == 201, response.content
    run = response.json()
    assert (run["status"], run["preset"], run["compute_target"], run["total_steps"], run["last_step"]) == (
        "pending",
        "tiny-cpu-demo",
        "local",
        30,
        -1,
    )
    assert run["config"] == {"lr": 1e-6, "rollout": {"n": 8}}
    assert sorted((s["name"], s["weight"]) for s in run["sources"]) == [("chart", 0.5), ("geo", 2.0)]
    assert Run.objects.get(pk=run["id"]).created_by == user
    assert owner.get(API + f"runs/{run['id']}/").json() == run


def test_the_defaults_of_a_run(project, make_source, owner):
    geo = make_source(project, name="geo")
    run = owner.post(API + "runs/", _body(project, (geo, 1.0)), format="json").json()
    assert (run["preset"], run["total_steps"], run["config"], run["description"]) == (
        "tiny-cpu-demo",
        100,
        {},
        "",
    )
    # A weight left out is 1.0.
    body = {"project": project.pk, "name": "r", "sources": [{"data_source": geo.pk}], "launch": False}
    assert owner.post(API + "runs/", body, format="json").json()["sources"][0]["weight"] == 1.0


def test_a_source_of_another_project_is_404(project, make_source, make_project, other_user, owner):
    from control.models import Run

    mine = make_source(project, name="geo")
    theirs = make_source(make_project(other_user), name="secret")
    response = owner.post(API + "runs/", _body(project, (mine, 1.0), (theirs, 1.0)), format="json")
    assert_error(
        response,
        404,
        code="not_found",
        message=f"data source(s) [{theirs.pk}] do not exist in project {project.pk}",
    )
    assert Run.objects.count() == 0


def test_a_source_of_another_of_my_projects_is_404(project, make_source, make_project, user, owner):
    mine = make_source(make_project(user), name="elsewhere")
    response = owner.post(API + "runs/", _body(project, (mine, 1.0)), format="json")
    assert_error(response, 404, message=f"data source(s) [{mine.pk}] do not exist in project {project.pk}")


def test_a_missing_source_is_404(project, owner):
    body = {"project": project.pk, "name": "r", "sources": [{"data_source": 987654}]}
    assert_error(
        owner.post(API + "runs/", body, format="json"),
        404,
        message=f"data source(s) [987654] do not exist in project {project.pk}",
    )


def test_a_source_listed_twice_is_400(project, make_source, owner):
    from control.models import Run

    geo = make_source(project, name="geo")
    response = owner.post(API + "runs/", _body(project, (geo, 1.0), (geo, 2.0)), format="json")
    assert_error(response, 400, code="invalid", message=f"data source {geo.pk} is listed twice")
    assert Run.objects.count() == 0


@pytest.mark.parametrize(
    ("weight", "message"),
    [
        (0, "sources: 0: weight: Ensure this value is greater than or equal to 1e-09."),
        (-1, "sources: 0: weight: Ensure this value is greater than or equal to 1e-09."),
        (1e10, "sources: 0: weight: Ensure this value is less than or equal to 1000000000.0."),
        ("heavy", "sources: 0: weight: A valid number is required."),
        ("nan", "sources: 0: weight: A valid number is required."),
        (None, "sources: 0: weight: This field may not be null."),
    ],
)
def test_a_bad_weight_is_400(weight, message, project, make_source, owner):
    geo = make_source(project, name="geo")
    body = {"project": project.pk, "name": "r", "sources": [{"data_source": geo.pk, "weight": weight}]}
    assert_error(owner.post(API + "runs/", body, format="json"), 400, message=message)


def test_more_than_200_sources_is_400(project, owner):
    body = {"project": project.pk, "name": "r", "sources": [{"data_source": i} for i in range(1, 202)]}
    assert_error(
        owner.post(API + "runs/", body, format="json"),
        400,
        message="sources: Ensure this field has no more than 200 elements.",
    )


def test_a_missing_project_is_404(owner, project, make_source):
    geo = make_source(project, name="geo")
    body = {"project": 987654, "name": "r", "sources": [{"data_source": geo.pk}]}
    assert_error(
        owner.post(API + "runs/", body, format="json"),
        404,
        message="project 987654 does not exist or you are not a member of it",
    )


def test_cancelling_a_pending_run_cancels_it_and_twice_is_409(run, owner):
    response = owner.post(API + f"runs/{run.pk}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    again = owner.post(API + f"runs/{run.pk}/cancel/")
    assert_error(
        again, 409, code="conflict", message=f"run {run.pk} already ended (cancelled); nothing to cancel"
    )
    assert owner.get(API + f"runs/{run.pk}/").json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("status", "after"),
    [("submitted", "cancelling"), ("running", "cancelling"), ("cancelling", "cancelling")],
)
def test_cancelling_a_run_on_the_cluster_asks_it_to_stop(status, after, run, owner):
    from control.models import Run

    Run.objects.filter(pk=run.pk).update(status=status)
    response = owner.post(API + f"runs/{run.pk}/cancel/")
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["finished_at"]) == (after, None)


@pytest.mark.parametrize("status", ["succeeded", "failed", "cancelled"])
def test_cancelling_an_ended_run_is_409(status, run, owner):
    from control.models import Run

    Run.objects.filter(pk=run.pk).update(status=status)
    assert_error(
        owner.post(API + f"runs/{run.pk}/cancel/"),
        409,
        message=f"run {run.pk} already ended ({status}); nothing to cancel",
    )


def test_runs_list_newest_first_and_filters(project, make_run, make_project, user, owner):
    from control.models import Run

    first, second = make_run(project, name="first"), make_run(project, name="second")
    third = make_run(make_project(user), name="third")
    Run.objects.filter(pk=second.pk).update(status="running")
    names = lambda **q: [r["name"] for r in owner.get(API + "runs/", q).json()["results"]]  # noqa: E731
    assert names() == ["third", "second", "first"]
    assert names(project=project.pk) == ["second", "first"]
    assert names(status="running") == ["second"]
    assert names(status="pending", project=third.project_id) == ["third"]
    refused = owner.get(API + "runs/", {"status": "nonsense"})
    assert refused.status_code == 400
    assert refused.json()["message"].startswith("status: must be one of pending, queued, submitted, running")
    assert first.pk != third.pk


@pytest.mark.parametrize(
    ("name", "folder", "content_type"),
    [
        ("config.json", False, "application/octet-stream"),  # not application/json: bytes to save
        ("attempt-1.log", False, "application/octet-stream"),
        ("checkpoint-3", True, "application/gzip"),
    ],
)
def test_an_artifact_downloads_with_a_media_type_the_schema_documents(
    run, owner, storage_root, name, folder, content_type
) -> None:
    """Found by the API fuzzer: a folder answered application/gzip, which the schema did not document."""
    from control.models import RunArtifact

    path = storage_root / name
    if folder:
        path.mkdir()
        (path / "config.json").write_text("{}")
    else:
        path.write_text("{}")
    artifact = RunArtifact.objects.create(run=run, kind="checkpoint", step=3, uri=path.as_uri())
    response = owner.get(API + f"runs/{run.pk}/artifacts/{artifact.pk}/download/")
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    schema = owner.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    documented = schema["paths"]["/api/v1/runs/{run_id}/artifacts/{artifact_id}/download/"]["get"]
    assert set(documented["responses"]["200"]["content"]) == {"application/octet-stream", "application/gzip"}

"""Run-scoped tokens: they die with their run's attempt, and the run's editors list and revoke them.

A training job holds a token of its run (made when the attempt is submitted). Once the run has
ended (succeeded, failed, cancelled, lost) no process of that attempt runs any more: Ray reports a
job ended only after its entrypoint exited, and the trainer delivers (or spools) its last points
before it exits. So the token is revoked by the transition to an ended state, and a token of an
ended run is refused even when nobody revoked it (one made before runs revoked theirs).
"""

from __future__ import annotations

import pytest

from tests.integration.control.helpers import assert_error

pytestmark = pytest.mark.django_db

API = "/api/v1/"
POINTS = {"points": [{"step": 1, "key": "reward/final", "source": "geo_math", "value": 0.5}]}
BAD_TOKEN = "invalid, expired or revoked token"
RUN_TOKEN_FIELDS = {"id", "run", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"}


def _running(run):
    """``run`` as a submitted attempt whose trainer has sent its first points."""
    from control.services.run_lifecycle import run_transition

    run_transition(run=run, to="queued", attempt=1)
    run_transition(run=run, to="submitted", ray_submission_id=f"triune-run-{run.pk}-1")
    return run_transition(run=run, to="running")


def _job_token(run):
    """The token run_submit gives the job, and an API client that sends it."""
    from rest_framework.test import APIClient

    from control.services.tokens import api_token_create

    token, raw = api_token_create(user=run.created_by, name=f"run {run.pk} attempt {run.attempt}", run=run)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return token, client


def _ingest(client, run, step: int = 1):
    body = {"points": [{"step": step, "key": "reward/final", "source": "geo_math", "value": 0.5}]}
    return client.post(API + f"runs/{run.pk}/metrics/", body, format="json")


def _end(run, status: str):
    """End ``run`` the way the platform does: a cancel goes through cancelling, the reconciler ends it."""
    from control.services.run_lifecycle import run_transition
    from control.services.runs import run_cancel

    if status == "cancelled":
        run_cancel(run=run)
    return run_transition(run=run, to=status, reason="Ray reports the job ended")


# ------------------------------------------------------------------------------ dying with the run


@pytest.mark.parametrize("status", ["cancelled", "failed", "lost", "succeeded"])
def test_a_run_token_stops_writing_once_its_run_has_ended(status, run):
    from control.models import MetricPoint

    run = _running(run)
    token, client = _job_token(run)
    assert _ingest(client, run, step=1).status_code == 200
    _end(run, status)
    response = _ingest(client, run, step=2)
    assert_error(
        response,
        401,
        code="authentication_failed",
        message=f"run {run.pk} has ended ({status}): its run-scoped tokens no longer work",
    )
    assert response["WWW-Authenticate"] == "Bearer"
    assert list(MetricPoint.objects.filter(run=run).values_list("step", flat=True)) == [1]
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_run_token_still_writes_while_its_run_is_cancelling(run):
    # SIGTERM lets the trainer send its last points before it exits; the run ends after that.
    from control.services.runs import run_cancel

    run = _running(run)
    _, client = _job_token(run)
    assert run_cancel(run=run).status == "cancelling"
    assert _ingest(client, run, step=7).json() == {"accepted": 1}


def test_a_token_of_a_run_that_ended_without_revoking_it_is_refused(run):
    # A token made before runs revoked theirs on ending: the run's state alone refuses it.
    from control.models import Run

    run = _running(run)
    token, client = _job_token(run)
    Run.objects.filter(pk=run.pk).update(status="failed")
    assert_error(
        _ingest(client, run),
        401,
        message=f"run {run.pk} has ended (failed): its run-scoped tokens no longer work",
    )


def test_a_resume_does_not_bring_the_previous_attempts_token_back(run):
    from control.services.run_lifecycle import run_transition

    run = _running(run)
    _, old = _job_token(run)
    _end(run, "failed")
    run = run_transition(run=run, to="queued", attempt=2, reason="resumed as attempt 2")
    assert_error(_ingest(old, run), 401, message=f"this run-scoped token of run {run.pk} was revoked")
    # The new attempt's token writes.
    _, new = _job_token(run)
    assert _ingest(new, run).status_code == 200


def test_ending_a_run_leaves_personal_tokens_and_other_runs_tokens_alone(run, make_run, project, user):
    from control.models import ApiToken
    from control.services.tokens import api_token_create

    run = _running(run)
    other = _running(make_run(project))
    personal, _ = api_token_create(user=user, name="laptop")
    other_token, _ = _job_token(other)
    _job_token(run)
    _end(run, "succeeded")
    assert set(ApiToken.objects.filter(revoked_at__isnull=True).values_list("pk", flat=True)) >= {
        personal.pk,
        other_token.pk,
    }


# ------------------------------------------------------------------------------ listing


@pytest.fixture
def team(project, user, make_user, add_member, client_for):
    """Clients of the project's owner, member and viewer, and of a member of another project only."""
    member, viewer, stranger = make_user("mia"), make_user("victor"), make_user("mallory")
    add_member(project, member, "member")
    add_member(project, viewer, "viewer")
    return {
        "owner": client_for(user),
        "member": client_for(member),
        "viewer": client_for(viewer),
        "stranger": client_for(stranger),
    }


@pytest.mark.parametrize("who", ["owner", "member"])
def test_the_runs_editors_list_its_tokens_without_their_secret(who, team, run, make_run, project, user):
    from control.services.tokens import api_token_create

    run = _running(run)
    first, _ = _job_token(run)
    api_token_create(user=user, name="laptop")  # personal: not the run's
    _job_token(_running(make_run(project)))  # another run's
    response = team[who].get(API + f"runs/{run.pk}/tokens/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 1
    (item,) = body["results"]
    assert set(item) == RUN_TOKEN_FIELDS | {"live"}
    assert (item["id"], item["run"], item["name"], item["prefix"]) == (
        first.pk,
        run.pk,
        f"run {run.pk} attempt 1",
        first.prefix,
    )
    assert (item["revoked_at"], item["live"]) == (None, True)
    assert first.digest not in response.content.decode()


def test_the_list_shows_each_attempts_token_and_which_still_works(run, team):
    from control.services.run_lifecycle import run_transition

    run = _running(run)
    old, _ = _job_token(run)
    _end(run, "lost")
    run = run_transition(run=run, to="queued", attempt=2)
    new, _ = _job_token(run)
    results = team["owner"].get(API + f"runs/{run.pk}/tokens/").json()["results"]
    assert [(t["id"], t["live"], t["revoked_at"] is None) for t in results] == [
        (new.pk, True, True),
        (old.pk, False, False),
    ]


def test_a_viewer_cannot_list_a_runs_tokens(run, team, project):
    _job_token(_running(run))
    assert_error(
        team["viewer"].get(API + f"runs/{run.pk}/tokens/"),
        403,
        code="permission_denied",
        message=f"you are a viewer of project {project.pk}; ask an owner for the member role",
    )


@pytest.mark.parametrize("route", ["runs/{run}/tokens/", "runs/{run}/tokens/{token}/"])
def test_a_member_of_another_project_gets_404(route, run, team):
    from control.models import ApiToken

    token, _ = _job_token(_running(run))
    path = API + route.format(run=run.pk, token=token.pk)
    for method in ("get", "delete") if route.endswith("{token}/") else ("get",):
        response = getattr(team["stranger"], method)(path)
        if response.status_code == 405:
            continue
        body = assert_error(response, 404, code="not_found")
        assert body["message"] == f"run {run.pk} does not exist or is not in one of your projects"
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None


@pytest.mark.parametrize("route", ["runs/{run}/tokens/", "runs/{run}/tokens/{token}/"])
def test_anonymous_is_401(route, run, api_client):
    token, _ = _job_token(run)
    path = API + route.format(run=run.pk, token=token.pk)
    method = "delete" if route.endswith("{token}/") else "get"
    assert_error(getattr(api_client, method)(path), 401, code="not_authenticated")


def test_a_run_token_cannot_list_or_revoke_its_own_runs_tokens(run):
    token, client = _job_token(_running(run))
    message = "a run-scoped token may only write metrics of its own run"
    assert_error(client.get(API + f"runs/{run.pk}/tokens/"), 403, message=message)
    assert_error(client.delete(API + f"runs/{run.pk}/tokens/{token.pk}/"), 403, message=message)
    token.refresh_from_db()
    assert token.revoked_at is None


def test_the_list_pages_like_every_list(run, team):
    for _ in range(3):
        _job_token(run)
    owner = team["owner"]
    page = owner.get(API + f"runs/{run.pk}/tokens/", {"page_size": "2", "page": "2"}).json()
    assert (page["count"], len(page["results"])) == (3, 1)
    assert_error(
        owner.get(API + f"runs/{run.pk}/tokens/", {"page_size": "501"}),
        400,
        message="page_size: must be an integer from 1 to 500, got '501'",
    )


# ------------------------------------------------------------------------------ revoking


@pytest.mark.parametrize("who", ["owner", "member"])
def test_an_editor_revokes_a_run_token_and_it_stops_at_once(who, run, team):
    run = _running(run)
    token, job = _job_token(run)
    assert _ingest(job, run, step=1).status_code == 200
    response = team[who].delete(API + f"runs/{run.pk}/tokens/{token.pk}/")
    assert response.status_code == 204, response.content
    assert_error(
        _ingest(job, run, step=2),
        401,
        code="authentication_failed",
        message=f"this run-scoped token of run {run.pk} was revoked",
    )
    (item,) = team[who].get(API + f"runs/{run.pk}/tokens/").json()["results"]
    assert (item["id"], item["live"], item["revoked_at"] is not None) == (token.pk, False, True)


def test_revoking_twice_keeps_the_first_time(run, team):
    token, _ = _job_token(run)
    path = API + f"runs/{run.pk}/tokens/{token.pk}/"
    assert team["owner"].delete(path).status_code == 204
    token.refresh_from_db()
    first = token.revoked_at
    assert team["owner"].delete(path).status_code == 204
    token.refresh_from_db()
    assert token.revoked_at == first


def test_a_viewer_cannot_revoke_a_run_token(run, team, project):
    token, job = _job_token(_running(run))
    assert_error(
        team["viewer"].delete(API + f"runs/{run.pk}/tokens/{token.pk}/"),
        403,
        message=f"you are a viewer of project {project.pk}; ask an owner for the member role",
    )
    token.refresh_from_db()
    assert token.revoked_at is None
    assert _ingest(job, run).status_code == 200


@pytest.mark.parametrize("other", ["another_run", "personal", "foreign_run", "missing", "huge"])
def test_only_this_runs_tokens_are_revoked_through_its_route(
    other, run, team, make_run, project, user, make_user, make_project
):
    from control.models import ApiToken
    from control.services.tokens import api_token_create

    _job_token(run)
    token_id = {
        "another_run": lambda: _job_token(make_run(project))[0].pk,
        "personal": lambda: api_token_create(user=user, name="laptop")[0].pk,
        "foreign_run": lambda: _job_token(make_run(make_project(make_user("eve"))))[0].pk,
        "missing": lambda: 987654,
        "huge": lambda: 10**30,
    }[other]()
    response = team["owner"].delete(API + f"runs/{run.pk}/tokens/{token_id}/")
    assert_error(response, 404, code="not_found", message=f"token {token_id} is not a token of run {run.pk}")
    assert not ApiToken.objects.filter(revoked_at__isnull=False).exists()


@pytest.mark.parametrize("path", ["runs/{huge}/tokens/", "runs/{huge}/tokens/1/", "runs/0/tokens/"])
def test_a_huge_or_missing_run_id_is_404(path, team):
    response = team["owner"].get(API + path.format(huge=10**30))
    if response.status_code == 405:  # the detail route only revokes
        response = team["owner"].delete(API + path.format(huge=10**30))
    assert_error(response, 404, code="not_found")


@pytest.mark.parametrize("path", ["runs/abc/tokens/", "runs/1/tokens/x/", "runs/1/tokens/-1/"])
def test_a_malformed_id_is_a_json_404(path, team):
    assert_error(team["owner"].get(API + path), 404, code="not_found")


def test_a_body_or_query_string_changes_nothing(run, team):
    token, _ = _job_token(run)
    path = API + f"runs/{run.pk}/tokens/{token.pk}/"
    hostile = "<script>alert(1)</script>\x00' OR 1=1 --"
    assert_error(team["owner"].get(API + f"runs/{run.pk}/tokens/", {"q": hostile}), 400, code="invalid")
    response = team["owner"].delete(path, {"id": hostile, "run": "x"}, format="json")
    assert response.status_code == 204
    token.refresh_from_db()
    assert token.run_id == run.pk and token.revoked_at is not None


# ------------------------------------------------------------------------------ schema


def test_the_schema_describes_the_run_token_routes(client):
    import yaml

    schema = yaml.safe_load(client.get("/api/schema/").content)
    listing = schema["paths"]["/api/v1/runs/{run_id}/tokens/"]
    detail = schema["paths"]["/api/v1/runs/{run_id}/tokens/{token_id}/"]
    assert set(listing) - {"parameters"} == {"get"}
    assert set(detail) - {"parameters"} == {"delete"}
    assert "204" in detail["delete"]["responses"]
    assert {p["name"] for p in listing["get"]["parameters"]} >= {"run_id", "page", "page_size"}
    ref = listing["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(page["required"]) == {"count", "results"}
    item_ref = page["properties"]["results"]["items"]["$ref"]
    item = schema["components"]["schemas"][item_ref.rsplit("/", 1)[-1]]
    assert set(item["properties"]) == RUN_TOKEN_FIELDS | {"live"}
    assert item["properties"]["live"]["type"] == "boolean"


def test_an_attempts_token_is_the_same_on_every_try_and_new_for_every_attempt(run, make_run, project):
    """A submission tried again makes the very token the job got from the first try."""
    from control.models import ApiToken, Run
    from control.services.tokens import api_token_check, run_attempt_token

    Run.objects.filter(pk=run.pk).update(status="queued", attempt=1)
    run.refresh_from_db()
    first, raw = run_attempt_token(run=run)
    again, raw_again = run_attempt_token(run=run)
    assert raw_again == raw and again.pk == first.pk
    assert ApiToken.objects.filter(run=run).count() == 1
    assert api_token_check(raw=raw).run_id == run.pk

    # The first try's row rolled back with its worker: the retry stores the same token again.
    ApiToken.objects.filter(pk=first.pk).delete()
    stored, raw_retry = run_attempt_token(run=run)
    assert raw_retry == raw and api_token_check(raw=raw).pk == stored.pk

    Run.objects.filter(pk=run.pk).update(attempt=2)
    run.refresh_from_db()
    assert run_attempt_token(run=run)[1] != raw
    other = make_run(project)
    Run.objects.filter(pk=other.pk).update(attempt=2)
    other.refresh_from_db()
    assert run_attempt_token(run=other)[1] not in (raw, run_attempt_token(run=run)[1])

"""Compute targets through the API: everyone signed in reads them, admins manage them.

A target's Ray token never passes through the platform's database or responses: the
target names the environment variable that holds it.
"""

from __future__ import annotations

import json
import socket

import pytest

from tests.integration.control.helpers import assert_error, send_raw

pytestmark = pytest.mark.django_db

API = "/api/v1/"
TARGETS = API + "compute-targets/"
SECRET = "s3cr3t-ray-token-0123456789"
ADMIN_ONLY = "only an administrator may manage compute targets"
ADDRESS = (
    "must be the http:// or https:// address of the cluster's Ray Jobs API, host and port only, "
    "e.g. http://ray-head:8265"
)
ENV_NAME = (
    "must be the name of an environment variable (letters, digits and '_', not starting with a digit, "
    "at most 100), e.g. LAB_RAY_TOKEN; never the token itself"
)
RUNTIME_KEYS = "env_vars, pip, conda, working_dir, py_modules, container, image_uri"
ENV_VARS = 'runtime_env.env_vars must map environment variable names to strings, e.g. {"HF_HOME": "/cache"}'
NEEDS_ADDRESS = "a registered cluster needs the address of its Ray Jobs API, e.g. http://ray-head:8265"
LOCAL_FIXED = "the local target's name and address are fixed (it is the head ./triune up starts)"


@pytest.fixture
def admin(make_user):
    return make_user("root", is_staff=True)


@pytest.fixture
def as_admin(admin, client_for):
    return client_for(admin)


@pytest.fixture
def as_user(user, client_for):
    return client_for(user)


@pytest.fixture
def ray_token(monkeypatch):
    """The lab cluster's token, where the web and worker processes read it."""
    monkeypatch.setenv("LAB_RAY_TOKEN", SECRET)
    return SECRET


def _lab(**extra) -> dict:
    return {
        "name": "lab",
        "description": "the lab's 8-GPU node",
        "address": "http://ray-head.lab:8265",
        "auth_token_env": "LAB_RAY_TOKEN",
        "resources": {"CPU": 64, "GPU": 8},
        "runtime_env": {"env_vars": {"HF_HOME": "/cache/hf"}},
        **extra,
    }


@pytest.fixture
def lab(as_admin, ray_token) -> dict:
    response = as_admin.post(TARGETS, _lab(), format="json")
    assert response.status_code == 201, response.content
    return response.json()


def _local_id() -> int:
    from control.models import ComputeTarget

    return ComputeTarget.objects.get(name="local").pk


def _targets() -> list[tuple]:
    from control.models import ComputeTarget

    return list(ComputeTarget.objects.order_by("name").values_list("name", "address", "enabled"))


# -- reading -------------------------------------------------------------------------------------


def test_any_signed_in_user_lists_targets_with_what_they_offer(lab, as_user, settings):
    settings.TRIUNE_RAY_CPUS = 4.0
    settings.TRIUNE_RAY_GPUS = 1.0
    response = as_user.get(TARGETS)
    assert response.status_code == 200, response.content
    listed = {t["name"]: t for t in response.json()}
    assert sorted(listed) == ["lab", "local"]
    local = listed["local"]
    assert (local["address"], local["is_local"], local["enabled"], local["offers"]) == (
        "",
        True,
        True,
        {"CPU": 4.0, "GPU": 1.0},
    )
    assert (listed["lab"]["is_local"], listed["lab"]["offers"]) == (False, {"CPU": 64.0, "GPU": 8.0})
    assert as_user.get(TARGETS + f"{lab['id']}/").json() == listed["lab"]


def test_the_local_target_offers_the_machines_cpus_when_not_told(as_user, settings):
    import os

    settings.TRIUNE_RAY_CPUS = 0.0
    settings.TRIUNE_RAY_GPUS = 0.0
    local = as_user.get(TARGETS + f"{_local_id()}/").json()
    assert local["offers"] == {"CPU": float(os.cpu_count() or 1), "GPU": 0.0}


def test_a_missing_target_is_404(as_user):
    assert_error(
        as_user.get(TARGETS + "999999/"),
        404,
        code="not_found",
        message="compute target 999999 does not exist",
    )


def test_no_token_is_401(api_client):
    assert_error(api_client.get(TARGETS), 401, code="not_authenticated")


# -- who may manage them -------------------------------------------------------------------------


def test_a_non_admin_cannot_create_patch_or_delete(lab, as_user):
    before = _targets()
    assert_error(as_user.post(TARGETS, _lab(name="mine"), format="json"), 403, message=ADMIN_ONLY)
    for target_id in (lab["id"], _local_id()):
        response = as_user.patch(TARGETS + f"{target_id}/", {"enabled": False}, format="json")
        assert_error(response, 403, code="permission_denied", message=ADMIN_ONLY)
        assert_error(as_user.delete(TARGETS + f"{target_id}/"), 403, message=ADMIN_ONLY)
    assert _targets() == before


def test_an_admin_creates_patches_and_deletes_a_target(as_admin, ray_token):
    response = as_admin.post(TARGETS, _lab(), format="json")
    assert response.status_code == 201, response.content
    lab = response.json()
    expected = _lab() | {"is_local": False, "enabled": True, "offers": {"CPU": 64.0, "GPU": 8.0}}
    assert {k: lab[k] for k in expected} == expected
    response = as_admin.patch(
        TARGETS + f"{lab['id']}/", {"enabled": False, "resources": {"GPU": 4}}, format="json"
    )
    assert response.status_code == 200, response.content
    assert (response.json()["enabled"], response.json()["offers"]) == (False, {"GPU": 4.0})
    assert as_admin.delete(TARGETS + f"{lab['id']}/").status_code == 204
    assert [name for name, *_ in _targets()] == ["local"]


@pytest.mark.parametrize(
    "address",
    [
        "http://ray-head",
        "https://ray.example.org",
        "http://10.0.0.5:8265/",
        "http://[::1]:8265",
        "http://h:1",
    ],
)
def test_an_address_is_a_host_and_an_optional_port(as_admin, address):
    response = as_admin.post(TARGETS, _lab(address=address), format="json")
    assert response.status_code == 201, response.content
    assert response.json()["address"] == address


# -- what an admin may not do --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"address": ""}, {"address": [NEEDS_ADDRESS]}),
        ({"address": "ftp://ray-head:8265"}, {"address": [ADDRESS]}),
        ({"address": "ray-head:8265"}, {"address": [ADDRESS]}),
        ({"address": "http://"}, {"address": [ADDRESS]}),
        ({"address": "http://:::"}, {"address": [ADDRESS]}),
        ({"address": "http://admin:hunter2@ray-head:8265"}, {"address": [ADDRESS]}),
        ({"address": "http://ray-head:8265/api/jobs"}, {"address": [ADDRESS]}),
        ({"auth_token_env": "1LAB"}, {"auth_token_env": [ENV_NAME]}),
        ({"auth_token_env": "LAB-TOKEN"}, {"auth_token_env": [ENV_NAME]}),
        ({"auth_token_env": "$(cat /etc/passwd)"}, {"auth_token_env": [ENV_NAME]}),
        ({"auth_token_env": "A" * 101}, {"auth_token_env": [ENV_NAME]}),
        (
            {"runtime_env": {"secrets": {"token": "x"}}},
            {
                "runtime_env": [
                    f"runtime_env key 'secrets' is not allowed; runtime_env may hold {RUNTIME_KEYS}"
                ]
            },
        ),
        ({"runtime_env": {"env_vars": ["HF_HOME=/cache"]}}, {"runtime_env": [ENV_VARS]}),
        ({"runtime_env": {"env_vars": {"HF_HOME": 1}}}, {"runtime_env": [ENV_VARS]}),
        ({"runtime_env": {"env_vars": {"BAD NAME": "x"}}}, {"runtime_env": [ENV_VARS]}),
        (
            {"resources": {"GPU": -1}},
            {"resources": {"GPU": ["Ensure this value is greater than or equal to 0."]}},
        ),
        ({"resources": {"GPU": "many"}}, {"resources": {"GPU": ["A valid number is required."]}}),
        (
            {"name": "Lab Cluster!"},
            {"name": ['Enter a valid "slug" consisting of letters, numbers, underscores or hyphens.']},
        ),
    ],
    ids=[
        "no-address",
        "ftp",
        "no-scheme",
        "no-host",
        "colons",
        "credentials",
        "path",
        "env-digit-first",
        "env-dash",
        "env-shell",
        "env-too-long",
        "runtime-env-key",
        "env-vars-list",
        "env-vars-number",
        "env-vars-name",
        "resource-negative",
        "resource-string",
        "name-not-slug",
    ],
)
def test_a_bad_target_is_400_with_a_clear_message(as_admin, body, fields):
    before = _targets()
    response = as_admin.post(TARGETS, _lab() | body, format="json")
    got = assert_error(response, 400, code="invalid")
    assert got["extra"]["fields"] == fields, got
    assert _targets() == before


def test_a_token_field_is_refused_not_stored(as_admin):
    response = as_admin.post(TARGETS, _lab(auth_token=SECRET), format="json")
    got = assert_error(response, 400, code="invalid")
    assert list(got["extra"]["fields"]) == ["auth_token"]
    assert SECRET not in response.content.decode()
    assert [name for name, *_ in _targets()] == ["local"]


@pytest.mark.parametrize(
    ("raw_runtime_env", "message"),
    [
        ('{"env_vars": {"HF_HOME": "\\u0000"}}', "runtime_env must not contain NUL characters (\\u0000)"),
        (
            '{"env_vars": {"HF_HOME": "\\ud800"}}',
            "runtime_env must not contain lone surrogates (\\ud800-\\udfff)",
        ),
        ('{"working_dir": 1e999}', "runtime_env must not contain NaN or infinite numbers"),
        ('{"pip": ["' + "x" * 100_000 + '"]}', "runtime_env is larger than 64 kB"),
    ],
    ids=["nul", "lone-surrogate", "infinity", "100kB"],
)
def test_a_hostile_runtime_env_is_400(as_admin, raw_runtime_env, message):
    before = _targets()
    raw = json.dumps(_lab(runtime_env="ENV")).replace('"ENV"', raw_runtime_env)
    response = send_raw(as_admin, "post", TARGETS, raw)
    got = assert_error(response, 400, code="invalid")
    assert got["extra"]["fields"] == {"runtime_env": [message]}, got
    assert _targets() == before


def test_a_hostile_resource_name_is_400(as_admin):
    before = _targets()
    raw = json.dumps(_lab(resources="RES")).replace('"RES"', '{"GPU\\u0000": 1}')
    response = send_raw(as_admin, "post", TARGETS, raw)
    got = assert_error(response, 400, code="invalid")
    assert got["extra"]["fields"] == {"resources": ["resources must not contain NUL characters (\\u0000)"]}
    assert _targets() == before


def test_a_duplicate_name_is_409(lab, as_admin):
    for name in ("lab", "local"):
        response = as_admin.post(TARGETS, _lab(name=name), format="json")
        message = f"a compute target named {name!r} exists already; choose another name"
        body = assert_error(response, 409, code="conflict", message=message)
        assert body["extra"]["fields"] == {"name": [message]}
    other = as_admin.post(TARGETS, _lab(name="other"), format="json").json()
    response = as_admin.patch(TARGETS + f"{other['id']}/", {"name": "lab"}, format="json")
    assert_error(
        response,
        409,
        code="conflict",
        message="a compute target named 'lab' exists already; choose another name",
    )


def test_the_local_target_cannot_be_renamed_given_an_address_or_deleted(as_admin):
    local = TARGETS + f"{_local_id()}/"
    before = _targets()
    for body in ({"name": "home"}, {"address": "http://elsewhere:8265"}):
        assert_error(as_admin.patch(local, body, format="json"), 409, code="conflict", message=LOCAL_FIXED)
    response = as_admin.delete(local)
    assert_error(
        response, 409, code="conflict", message="the local target cannot be deleted; disable it instead"
    )
    assert _targets() == before
    # What it offers and whether it is enabled are the admin's to change.
    response = as_admin.patch(local, {"description": "the head", "enabled": False}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["name"], response.json()["address"], response.json()["enabled"]) == (
        "local",
        "",
        False,
    )


def test_a_cluster_cannot_lose_its_address(lab, as_admin):
    """An empty address is what makes a target local: the cluster would become a second local head."""
    response = as_admin.patch(TARGETS + f"{lab['id']}/", {"address": ""}, format="json")
    body = assert_error(response, 400, code="invalid", message=NEEDS_ADDRESS)
    assert body["extra"]["fields"] == {"address": [NEEDS_ADDRESS]}
    assert as_admin.get(TARGETS + f"{lab['id']}/").json()["address"] == "http://ray-head.lab:8265"


def _run_on(project, make_run, target: str, status: str):
    from control.models import Run

    run = make_run(project)
    Run.objects.filter(pk=run.pk).update(compute_target=target, status=status, attempt=1)
    run.refresh_from_db()
    return run


@pytest.mark.parametrize("status", ["queued", "submitted", "running", "cancelling"])
def test_a_target_with_active_runs_cannot_be_deleted(lab, as_admin, project, make_run, status):
    run = _run_on(project, make_run, "lab", status)
    response = as_admin.delete(TARGETS + f"{lab['id']}/")
    assert_error(
        response, 409, code="conflict", message="runs on 'lab' are active; wait for them or cancel them first"
    )
    assert "lab" in [name for name, *_ in _targets()]
    from control.models import Run

    Run.objects.filter(pk=run.pk).update(status="succeeded")
    assert as_admin.delete(TARGETS + f"{lab['id']}/").status_code == 204


def test_a_target_whose_runs_have_not_ended_keeps_its_name(lab, as_admin, project, make_run):
    """Runs name their target: a rename would leave them pointing at nothing."""
    from control.models import Run

    run = _run_on(project, make_run, "lab", "running")
    response = as_admin.patch(TARGETS + f"{lab['id']}/", {"name": "lab2"}, format="json")
    assert_error(
        response,
        409,
        code="conflict",
        message="1 run(s) that have not ended name compute target 'lab'; wait for them or cancel them before "
        "renaming it",
    )
    Run.objects.filter(pk=run.pk).update(status="failed")
    response = as_admin.patch(TARGETS + f"{lab['id']}/", {"name": "lab2"}, format="json")
    assert response.status_code == 200, response.content


# -- the token -----------------------------------------------------------------------------------


def test_the_token_never_appears_in_a_response(
    as_admin, as_user, ray_token, project, demo_sources, client_for, user
):
    responses = [as_admin.post(TARGETS, _lab(), format="json")]
    lab = responses[0].json()
    assert lab["auth_token_env"] == "LAB_RAY_TOKEN"
    responses += [
        as_admin.get(TARGETS),
        as_user.get(TARGETS),
        as_user.get(TARGETS + f"{lab['id']}/"),
        as_admin.patch(TARGETS + f"{lab['id']}/", {"description": "still the lab"}, format="json"),
        as_admin.post(TARGETS, _lab(), format="json"),  # the 409 of a duplicate
        as_admin.post(TARGETS, _lab(name="bad", auth_token_env=SECRET), format="json"),
    ]
    # A run launched on the target (queued; nothing reaches the cluster here).
    run = {
        "project": project.pk,
        "name": "on the lab",
        "sources": [{"data_source": demo_sources["synth_math"].pk}],
        "total_steps": 3,
        "compute_target": "lab",
    }
    responses.append(as_user.post(API + "runs/", run, format="json"))
    assert responses[-1].status_code == 201, responses[-1].content
    responses.append(as_user.get(API + f"runs/{responses[-1].json()['id']}/"))
    for response in responses:
        assert SECRET not in response.content.decode(), response.content[:300]


# -- a disabled target ---------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_disabled_target_still_stops_and_reconciles_its_runs(as_admin, project, make_run):
    """Disabling a target refuses new launches; runs already on it must still be watched and stoppable."""
    from control.services.runs import run_reconcile, run_stop

    response = as_admin.post(TARGETS, _lab(address=f"http://127.0.0.1:{_closed_port()}"), format="json")
    as_admin.patch(TARGETS + f"{response.json()['id']}/", {"enabled": False}, format="json")
    run = _run_on(project, make_run, "lab", "running")
    run.ray_submission_id = f"triune-run-{run.pk}-attempt-1"
    run.save(update_fields=["ray_submission_id"])
    # The cluster does not answer: nothing is stopped and the run stays as it was, without an error.
    assert run_stop(run_id=run.pk) is False
    assert run_reconcile(run_id=run.pk).status == "running"

"""Launching runs through the API: a refused launch is a 400 that names the field, and creates nothing.

POST /runs/ creates and launches in one transaction, so a launch check that fails leaves no
run behind. A launch that passes is queued and a submit task is sent to Celery by name once
the transaction commits; no worker consumes it here (Ray is not needed).
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

from tests.integration.control.helpers import assert_error, send_raw

pytestmark = pytest.mark.django_db

API = "/api/v1/"
EVAL_OFF = {"eval": {"every": 0, "before_training": False}}


@pytest.fixture(autouse=True)
def tasks_not_eager(settings):
    """Tasks go to the broker, never run inline: a launch only enqueues its submission."""
    from control.celery import app

    settings.CELERY_TASK_ALWAYS_EAGER = False
    previous = app.conf.task_always_eager
    app.conf.task_always_eager = False
    yield
    app.conf.task_always_eager = previous


@pytest.fixture
def owner(user, client_for):
    return client_for(user)


@pytest.fixture
def math(demo_sources):
    return demo_sources["synth_math"]


def _body(project, *sources, **extra) -> dict:
    return {
        "project": project.pk,
        "name": "bad input",
        "sources": [{"data_source": s.pk} for s in sources],
        "total_steps": 3,
        **extra,
    }


def _runs() -> int:
    from control.models import Run

    return Run.objects.count()


def assert_refused(
    response, fields: dict[str, list[str]], *, before: int, message: str | None = None
) -> dict:
    """A 400 of the one error shape with exactly ``fields``, and no run created."""
    body = assert_error(response, 400, code="invalid", message=message)
    assert body["extra"]["fields"] == fields, body
    assert _runs() == before
    return body


def _post(client, body: dict):
    return client.post(API + "runs/", body, format="json")


# -- the trainer's schema, through config overrides ------------------------------------------------

LR_KEYS = (
    "adv_estimator, advantage_sign, clip_high, clip_low, dual_clip_c, dynamic_sampling, entropy_coef, "
    "grad_clip, group_by_length, kl, logprob_micro_batch_size, lr, max_nan_steps, micro_batch_size, "
    "micro_batch_tokens, mini_batch_size, "
    "ppo_epochs, remove_padding, warmup_ratio, weight_decay"
)
SECTIONS = (
    "algo, checkpoint, data, engine, eval, model, output_dir, reward, rollout, seed, total_steps, tracking, "
    "warm_start"
)


@pytest.mark.parametrize(
    ("config", "field", "message"),
    [
        ({"algo": {"lr": -1e-6}}, "config.algo.lr", "must be > 0, got -1e-06"),
        ({"algo": {"lr": 0}}, "config.algo.lr", "must be > 0, got 0"),
        ({"algo": {"lr": "fast"}}, "config.algo.lr", "must be a number, got 'fast' (str)"),
        ({"algo": {"lr": "1e-6"}}, "config.algo.lr", "must be a number, got '1e-6' (str)"),
        ({"algo": {"lr": "NaN"}}, "config.algo.lr", "must be a number, got 'NaN' (str)"),
        ({"algo": {"lr": "inf"}}, "config.algo.lr", "must be a number, got 'inf' (str)"),
        ({"algo": {"lr": None}}, "config.algo.lr", "must be a number, got None (NoneType)"),
        ({"algo": {"lr": True}}, "config.algo.lr", "must be a number, got True (bool)"),
        (
            {"algo": {"lrr": 1e-5}},
            "config.algo.lrr",
            f"unknown key; did you mean lr? known keys: {LR_KEYS}",
        ),
        (
            {"optimizer": {"lr": 1e-5}},
            "config.optimizer",
            f"unknown key; known keys: {SECTIONS}",
        ),
        (
            {"rollout": {"n": 1}},
            "config.rollout.n",
            "GRPO needs at least 2 responses per prompt (a group of one has advantage 0), got 1; "
            "set rollout.n >= 2",
        ),
        ({"rollout": {"n": 2.5}}, "config.rollout.n", "must be an integer, got 2.5 (float)"),
        ({"seed": -1}, "config.seed", "must be >= 0, got -1"),
    ],
    ids=[
        "lr-negative",
        "lr-zero",
        "lr-string",
        "lr-number-as-string",
        "lr-nan-string",
        "lr-inf-string",
        "lr-null",
        "lr-bool",
        "unknown-key",
        "unknown-section",
        "grpo-group-of-one",
        "n-not-integer",
        "seed-negative",
    ],
)
def test_a_config_the_trainer_refuses_is_400_naming_the_field(project, math, owner, config, field, message):
    before = _runs()
    response = _post(owner, _body(project, math, config=config))
    assert_refused(
        response,
        {field: [message]},
        before=before,
        message=f"the run cannot be launched: {field}: {message}",
    )


def test_every_problem_of_a_config_is_named_at_once(project, math, owner):
    before = _runs()
    config = {"algo": {"lr": -1.0, "clip_low": 2}, "rollout": {"temperature": 0}}
    response = _post(owner, _body(project, math, config=config))
    assert_refused(
        response,
        {
            "config.algo.lr": ["must be > 0, got -1.0"],
            "config.algo.clip_low": ["must be < 1, got 2"],
            "config.rollout.temperature": ["must be > 0, got 0"],
        },
        before=before,
    )


def test_an_infinite_number_is_refused_not_stored(project, math, owner):
    """``1e999`` parses as infinity (json.loads only rejects the NaN/Infinity literals)."""
    before = _runs()
    raw = json.dumps(_body(project, math, config={"algo": {"lr": 1.0}})).replace("1.0", "1e999")
    response = send_raw(owner, "post", API + "runs/", raw)
    body = assert_error(response, 400)
    assert body["extra"]["fields"]["config"] == ["config must not contain infinite or NaN numbers"], body
    assert _runs() == before


def test_a_nan_literal_is_a_parse_error(project, math, owner):
    before = _runs()
    raw = json.dumps(_body(project, math, config={"algo": {"lr": 1.0}})).replace("1.0", "NaN")
    response = send_raw(owner, "post", API + "runs/", raw)
    body = assert_error(response, 400, code="parse_error")
    assert "NaN" in body["message"], body
    assert _runs() == before


PLATFORM_OWNED = [
    (
        {"data": {"sources": [{"name": "x", "train": ["/tmp/x.parquet"]}]}},
        "config.data.sources",
        "set the run's sources (and their weights) instead of config.data.sources",
    ),
    (
        {"data": {"root": "/data/orsta"}},
        "config.data.root",
        "the run's sources carry their own file URIs; remove config.data.root",
    ),
    (
        {"tracking": {"http": {"url": "http://elsewhere:8000", "run_id": "1"}}},
        "config.tracking.http",
        "the platform sets config.tracking.http for its runs; remove it",
    ),
    (
        {"output_dir": "/tmp/mine"},
        "config.output_dir",
        "the platform puts a run's output under its storage folder; remove config.output_dir",
    ),
    (
        {"total_steps": 50},
        "config.total_steps",
        "set the run's total_steps field instead of config.total_steps",
    ),
    # A null is still the user setting a platform-owned field.
    (
        {"data": {"sources": None}},
        "config.data.sources",
        "set the run's sources (and their weights) instead of config.data.sources",
    ),
    (
        {"total_steps": None},
        "config.total_steps",
        "set the run's total_steps field instead of config.total_steps",
    ),
]


@pytest.mark.parametrize(
    ("config", "field", "message"),
    PLATFORM_OWNED,
    ids=["sources", "root", "tracking-http", "output-dir", "total-steps", "sources-null", "total-steps-null"],
)
def test_a_platform_owned_field_in_the_config_is_refused(project, math, owner, config, field, message):
    before = _runs()
    response = _post(owner, _body(project, math, config=config))
    assert_refused(response, {field: [message]}, before=before)


# -- the run's sources -------------------------------------------------------------------------


def test_a_source_with_no_train_rows_is_refused(project, math, owner):
    from control.models import DataSource

    empty = DataSource.objects.create(
        project=project,
        dataset_version=math.dataset_version,
        name="empty_split",
        verifier="mathverify",
        task_type="math",
        train_count=0,
        test_count=0,
        files={},
    )
    before = _runs()
    response = _post(owner, _body(project, math, empty))
    assert_refused(
        response,
        {
            "sources": [
                f"data source 'empty_split' (id {empty.pk}) has no train rows; choose a source with a "
                "train split"
            ]
        },
        before=before,
    )


@pytest.fixture
def no_test_split(project, math):
    """A source with real train files and no test split."""
    from control.models import DataSource

    return DataSource.objects.create(
        project=project,
        dataset_version=math.dataset_version,
        name="math_no_test",
        verifier="mathverify",
        task_type="math",
        train_count=math.train_count,
        test_count=0,
        files={"train": list(math.files["train"]), "test": []},
    )


def test_evaluation_needs_a_test_split_then_accepts_it_off(project, math, no_test_split, owner):
    before = _runs()
    response = _post(owner, _body(project, math, no_test_split))
    assert_refused(
        response,
        {
            "sources": [
                "evaluation is on but data source 'math_no_test' has no test split; set config.eval.every=0 "
                "and config.eval.before_training=false, or config.data.test_fraction > 0 to hold out train "
                "rows, or choose sources with a test split"
            ]
        },
        before=before,
    )
    response = _post(owner, _body(project, math, no_test_split, config=EVAL_OFF))
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    # Holding out train rows is the other way out.
    response = _post(owner, _body(project, no_test_split, config={"data": {"test_fraction": 0.25}}))
    assert response.status_code == 201, response.content
    assert _runs() == before + 2


def test_a_source_whose_files_are_gone_is_refused(project, math, owner, storage_root):
    """The stored files are checked when the run spec is built, before the run is queued."""
    from pathlib import Path

    for uri in math.files["train"]:
        Path(uri.removeprefix("file://")).unlink()
    before = _runs()
    response = _post(owner, _body(project, math))
    body = assert_error(response, 400, code="invalid")
    assert list(body["extra"]["fields"]) == ["sources"], body
    assert body["extra"]["fields"]["sources"][0].startswith("file not found: 'file://")
    assert _runs() == before


# -- the compute target and resources ----------------------------------------------------------


def test_more_gpus_than_the_local_target_offers_is_refused(project, math, owner, settings):
    settings.TRIUNE_RAY_GPUS = 0.0
    before = _runs()
    response = _post(owner, _body(project, math, num_gpus=1))
    assert_refused(
        response,
        {
            "num_gpus": [
                "the run asks for 1 GPU(s) but compute target 'local' offers 0; set num_gpus to at most 0 "
                "or choose a compute target that offers more"
            ]
        },
        before=before,
    )


def test_the_local_target_offers_what_triune_ray_gpus_says(project, math, owner, settings):
    settings.TRIUNE_RAY_GPUS = 2.0
    response = _post(owner, _body(project, math, num_gpus=2))
    assert response.status_code == 201, response.content
    before = _runs()
    response = _post(owner, _body(project, math, num_gpus=2.5))
    assert_refused(
        response,
        {
            "num_gpus": [
                "the run asks for 2.5 GPU(s) but compute target 'local' offers 2; set num_gpus to at most 2 "
                "or choose a compute target that offers more"
            ]
        },
        before=before,
    )


def test_more_cpus_than_the_local_target_offers_is_refused(project, math, owner, settings):
    settings.TRIUNE_RAY_CPUS = 2.0
    before = _runs()
    response = _post(owner, _body(project, math, num_cpus=3))
    assert_refused(
        response,
        {
            "num_cpus": [
                "the run asks for 3 CPU(s) but compute target 'local' offers 2; set num_cpus to at most 2 "
                "or choose a compute target that offers more"
            ]
        },
        before=before,
    )


def test_training_workers_that_do_not_fit_beside_the_entrypoint_are_refused(project, math, owner, settings):
    settings.TRIUNE_RAY_CPUS = 2.0
    before = _runs()
    engine = {"kind": "ray", "workers": 2, "cpus_per_worker": 1}
    response = _post(owner, _body(project, math, num_cpus=1, config={"engine": engine}))
    assert_refused(
        response,
        {
            "config.engine.workers": [
                "the run's entrypoint holds 1 CPU(s) and its 2 training workers 2, 3 in all, but compute "
                "target 'local' offers 2; lower num_cpus, config.engine.workers or "
                "config.engine.cpus_per_worker"
            ]
        },
        before=before,
    )
    engine["cpus_per_worker"] = 0.5
    response = _post(owner, _body(project, math, num_cpus=1, config={"engine": engine}))
    assert response.status_code == 201, response.content


def test_an_unknown_compute_target_is_refused(project, math, owner):
    before = _runs()
    response = _post(owner, _body(project, math, compute_target="moon-cluster"))
    message = "compute target 'moon-cluster' does not exist; choose one of: local"
    assert_refused(response, {"compute_target": [message]}, before=before, message=message)


def test_a_disabled_compute_target_is_refused(project, math, owner):
    from control.models import ComputeTarget

    ComputeTarget.objects.create(name="lab", address="http://lab-head:8265", enabled=False)
    before = _runs()
    response = _post(owner, _body(project, math, compute_target="lab"))
    message = "compute target 'lab' is disabled; choose one of: local"
    assert_refused(response, {"compute_target": [message]}, before=before, message=message)


# -- the model -----------------------------------------------------------------------------------

PLACEHOLDER = (
    "'<path/to/Qwen2.5-VL-7B-Instruct>' is a placeholder; override it with model.path=/path/to/checkpoint"
)


def test_a_placeholder_model_path_is_refused(project, math, owner):
    before = _runs()
    response = _post(owner, _body(project, math, preset="vtriune-7b"))
    assert_refused(response, {"config.model.path": [PLACEHOLDER]}, before=before)


def test_a_placeholder_model_path_is_refused_on_a_remote_target_too(project, math, owner):
    """A placeholder is wrong on every cluster: it needs no look at the cluster's disks."""
    from control.models import ComputeTarget

    ComputeTarget.objects.create(name="lab", address="http://lab-head:8265", resources={"GPU": 8})
    before = _runs()
    response = _post(owner, _body(project, math, preset="vtriune-7b", compute_target="lab"))
    assert_refused(response, {"config.model.path": [PLACEHOLDER]}, before=before)
    # A real-looking path is the cluster's to check: the launch is queued.
    config = {"model": {"path": "/models/Qwen2.5-VL-7B-Instruct"}}
    response = _post(owner, _body(project, math, preset="vtriune-7b", compute_target="lab", config=config))
    assert response.status_code == 201, response.content


def test_a_model_path_missing_on_the_local_target_is_refused(project, math, owner, tmp_path):
    before = _runs()
    missing = str(tmp_path / "no-such-checkpoint")
    response = _post(owner, _body(project, math, config={"model": {"path": missing}}))
    assert_refused(
        response,
        {
            "config.model.path": [
                f"{missing!r} is not a checkpoint directory (no config.json); give a local Hugging Face "
                "checkpoint, a URI of one (s3://bucket/models/name), or tiny:<arch>:<size>"
            ]
        },
        before=before,
    )


def test_a_malformed_tiny_model_is_refused(project, math, owner):
    before = _runs()
    response = _post(owner, _body(project, math, config={"model": {"path": "tiny:llama:huge"}}))
    assert_refused(
        response,
        {
            "config.model.path": [
                "a tiny model is written tiny:<arch>:<size> with arch in qwen2_vl, qwen2_5_vl, qwen3_vl "
                "and size in tiny, small, 2b, 7b; got 'tiny:llama:huge'"
            ]
        },
        before=before,
    )


# -- the run's own fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total_steps", "message"),
    [
        (0, "Ensure this value is greater than or equal to 1."),
        (-1, "Ensure this value is greater than or equal to 1."),
        (10_000_001, "Ensure this value is less than or equal to 10000000."),
        ("many", "A valid integer is required."),
        (2.5, "A valid integer is required."),
    ],
)
def test_total_steps_out_of_range_is_refused(project, math, owner, total_steps, message):
    before = _runs()
    response = _post(owner, _body(project, math, total_steps=total_steps))
    assert_refused(response, {"total_steps": [message]}, before=before)


def test_an_unknown_preset_is_refused(project, math, owner):
    before = _runs()
    response = _post(owner, _body(project, math, preset="gpt-5"))
    assert_refused(response, {"preset": ['"gpt-5" is not a valid choice.']}, before=before)


# -- hostile strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw_name", "message"),
    [
        ('"run \\u0000 one"', "Null characters are not allowed."),
        ('"run \\ud800 one"', "Surrogate characters are not allowed: U+D800."),
        ('"' + "x" * 100_000 + '"', "Ensure this field has no more than 200 characters."),
    ],
    ids=["nul", "lone-surrogate", "100kB"],
)
def test_a_hostile_name_is_refused(project, math, owner, raw_name, message):
    before = _runs()
    raw = json.dumps(_body(project, math, name="NAME")).replace('"NAME"', raw_name)
    response = send_raw(owner, "post", API + "runs/", raw)
    assert_refused(response, {"name": [message]}, before=before)


@pytest.mark.parametrize(
    ("raw_config", "message"),
    [
        ('{"algo": {"lr": "\\u0000"}}', "config must not contain NUL characters (\\u0000)"),
        ('{"algo\\u0000": {"lr": 1e-5}}', "config must not contain NUL characters (\\u0000)"),
        ('{"algo": {"lr": "\\udfff"}}', "config must not contain lone surrogates (\\ud800-\\udfff)"),
        ('{"\\ud800": 1}', "config must not contain lone surrogates (\\ud800-\\udfff)"),
        ('{"algo": {"lr": "' + "9" * 100_000 + '"}}', "config is larger than 64 kB"),
    ],
    ids=["nul-value", "nul-key", "surrogate-value", "surrogate-key", "100kB"],
)
def test_a_hostile_config_is_refused(project, math, owner, raw_config, message):
    before = _runs()
    raw = json.dumps(_body(project, math, config="CONFIG")).replace('"CONFIG"', raw_config)
    response = send_raw(owner, "post", API + "runs/", raw)
    assert_refused(response, {"config": [message]}, before=before)


def test_a_long_unknown_key_is_named_but_cut_short(project, math, owner):
    """A 30 kB key fits in a config (under 64 kB) but must not be echoed whole in the error."""
    before = _runs()
    key = "k" * 30_000
    response = _post(owner, _body(project, math, config={"algo": {key: 1}}))
    body = assert_error(response, 400, code="invalid")
    (field,) = body["extra"]["fields"]
    assert field.startswith("config.algo.kkkk") and len(field) <= 220, field[:300]
    assert len(response.content) < 5_000
    assert _runs() == before


def test_a_long_string_value_is_quoted_briefly(project, math, owner):
    before = _runs()
    response = _post(owner, _body(project, math, config={"algo": {"lr": "9" * 30_000}}))
    body = assert_refused(
        response,
        {"config.algo.lr": ["must be a number, got '" + "9" * 56 + "... (str)"]},
        before=before,
    )
    assert len(json.dumps(body)) < 1_000


# -- who may launch ------------------------------------------------------------------------------


def test_a_project_i_am_not_a_member_of_is_404(project, math, other_user, client_for):
    before = _runs()
    response = _post(client_for(other_user), _body(project, math))
    assert_error(
        response,
        404,
        code="not_found",
        message=f"project {project.pk} does not exist or you are not a member of it",
    )
    assert _runs() == before


def test_a_viewer_cannot_launch(project, math, viewer, client_for):
    before = _runs()
    response = _post(client_for(viewer), _body(project, math))
    assert_error(
        response,
        403,
        code="permission_denied",
        message=f"you are a viewer of project {project.pk}; ask an owner for the member role",
    )
    assert _runs() == before


def test_no_token_is_401(project, math, api_client):
    before = _runs()
    response = _post(api_client, _body(project, math))
    assert_error(response, 401, code="not_authenticated")
    assert response["WWW-Authenticate"] == "Bearer"
    assert _runs() == before


# -- a launch that passes, and the run's life cycle through the API ------------------------------


@pytest.fixture
def broker_queue():
    """The Celery app's default queue renamed for this test; yields a reader of its messages."""
    import redis
    from django.conf import settings

    from control.celery import app

    queue = f"triune-test-{uuid.uuid4().hex}"
    previous = app.conf.task_default_queue
    app.conf.task_default_queue = queue
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)

    def read() -> list[tuple[str, list]]:
        messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
        return [(m["headers"]["task"], json.loads(_body_of(m))[0]) for m in messages]

    try:
        yield read
    finally:
        app.conf.task_default_queue = previous
        client.delete(queue)
        client.close()


def _body_of(message: dict) -> str:
    import base64

    return base64.b64decode(message["body"]).decode()


def test_a_valid_launch_is_queued_with_an_event(
    project, math, owner, broker_queue, django_capture_on_commit_callbacks
):
    from control.models import RunEvent

    with django_capture_on_commit_callbacks(execute=True):
        started = time.monotonic()
        response = _post(owner, _body(project, math, config={"algo": {"lr": 1e-4}}))
        took = time.monotonic() - started
    assert response.status_code == 201, response.content
    run = response.json()
    assert (run["status"], run["attempt"], run["config"], run["error"]) == (
        "queued",
        1,
        {"algo": {"lr": 1e-4}},
        "",
    )
    assert run["queued_at"] is not None
    events = list(
        RunEvent.objects.filter(run_id=run["id"]).values_list("from_status", "to_status", "attempt")
    )
    assert events == [("pending", "queued", 1)]
    # The submission is enqueued by name once the transaction commits; without a worker it waits.
    assert broker_queue() == [("workers.tasks.run_submit", [run["id"]])]
    assert took < 10, took
    listed = owner.get(API + f"runs/{run['id']}/events/").json()
    assert [(e["from_status"], e["to_status"], e["reason"], e["attempt"]) for e in listed["results"]] == [
        ("pending", "queued", "launched", 1)
    ]


@pytest.fixture
def draft(project, math, owner):
    response = _post(owner, _body(project, math, launch=False))
    assert response.status_code == 201, response.content
    return response.json()


def test_a_draft_stays_pending_then_launches_once(draft, owner):
    assert (draft["status"], draft["attempt"]) == ("pending", 0)
    assert owner.get(API + f"runs/{draft['id']}/events/").json()["results"] == []
    response = owner.post(API + f"runs/{draft['id']}/launch/")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["attempt"]) == ("queued", 1)
    again = owner.post(API + f"runs/{draft['id']}/launch/")
    assert_error(
        again,
        409,
        code="conflict",
        message=f"run {draft['id']} is queued; only a pending run can be launched",
    )


def test_a_refused_launch_of_a_draft_leaves_it_pending(project, math, owner):
    response = _post(owner, _body(project, math, launch=False, config={"algo": {"lr": -1}}))
    run_id = response.json()["id"]
    response = owner.post(API + f"runs/{run_id}/launch/")
    body = assert_error(response, 400, code="invalid")
    assert body["extra"]["fields"] == {"config.algo.lr": ["must be > 0, got -1"]}
    assert owner.get(API + f"runs/{run_id}/").json()["status"] == "pending"


def test_a_pending_run_can_be_edited_and_a_queued_one_cannot(project, demo_sources, draft, owner):
    chart = demo_sources["synth_chart"]
    patch = {"config": {"algo": {"lr": 3e-4}}, "sources": [{"data_source": chart.pk, "weight": 2.0}]}
    response = owner.patch(API + f"runs/{draft['id']}/", patch, format="json")
    assert response.status_code == 200, response.content
    run = response.json()
    assert run["config"] == {"algo": {"lr": 3e-4}}
    assert [(s["name"], s["weight"]) for s in run["sources"]] == [("synth_chart", 2.0)]
    assert owner.post(API + f"runs/{draft['id']}/launch/").status_code == 200
    response = owner.patch(API + f"runs/{draft['id']}/", {"config": {}}, format="json")
    assert_error(
        response,
        409,
        code="conflict",
        message=f"run {draft['id']} is queued; only a pending run can be edited",
    )
    assert owner.get(API + f"runs/{draft['id']}/").json()["config"] == {"algo": {"lr": 3e-4}}


def test_a_clone_is_a_pending_copy(project, demo_sources, owner):
    sources = [{"data_source": demo_sources["synth_math"].pk, "weight": 2.0}]
    sources.append({"data_source": demo_sources["synth_ocr"].pk, "weight": 0.5})
    body = _body(project, config={"algo": {"lr": 1e-4}}, total_steps=7, num_cpus=0.5) | {"sources": sources}
    original = _post(owner, body).json()
    assert original["status"] == "queued"
    response = owner.post(API + f"runs/{original['id']}/clone/", {"name": "again"}, format="json")
    assert response.status_code == 201, response.content
    clone = response.json()
    assert (clone["status"], clone["attempt"], clone["name"], clone["cloned_from"]) == (
        "pending",
        0,
        "again",
        original["id"],
    )
    same = ("preset", "config", "sources", "total_steps", "num_cpus", "num_gpus", "compute_target")
    assert {k: clone[k] for k in same} == {k: original[k] for k in same}


def test_cancel_of_a_queued_run_ends_it_at_once(project, math, owner):
    run = _post(owner, _body(project, math)).json()
    response = owner.post(API + f"runs/{run['id']}/cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"
    assert response.json()["finished_at"] is not None
    events = owner.get(API + f"runs/{run['id']}/events/").json()["results"]
    assert [(e["from_status"], e["to_status"], e["reason"]) for e in events] == [
        ("pending", "queued", "launched"),
        ("queued", "cancelled", "cancelled before submission"),
    ]
    again = owner.post(API + f"runs/{run['id']}/cancel/")
    assert_error(
        again, 409, code="conflict", message=f"run {run['id']} already ended (cancelled); nothing to cancel"
    )


def test_resume_of_a_pending_or_succeeded_run_is_409(project, math, draft, owner):
    from control.models import Run

    response = owner.post(API + f"runs/{draft['id']}/resume/")
    assert_error(
        response,
        409,
        code="conflict",
        message=f"run {draft['id']} is pending; only a failed, cancelled or lost run can be resumed",
    )
    done = _post(owner, _body(project, math)).json()
    Run.objects.filter(pk=done["id"]).update(status=Run.Status.SUCCEEDED)
    response = owner.post(API + f"runs/{done['id']}/resume/")
    assert_error(
        response,
        409,
        code="conflict",
        message=f"run {done['id']} is succeeded; only a failed, cancelled or lost run can be resumed",
    )
    assert Run.objects.get(pk=done["id"]).attempt == 1

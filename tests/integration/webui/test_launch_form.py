"""The launch form with Django's test client: defaults, a launch, refusals beside their field, access, clone.

A launch that passes is queued and its submit task is sent by name once the transaction
commits (recorded here; no worker is needed); a refused one creates nothing.
"""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from control.models import Run
from control.services.launch import SUBMIT_TASK

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script>'
TINY = {
    "model_path": "tiny:qwen3_vl:tiny",
    "warm_start_steps": "0",
    "algo_lr": "0.0004",
    "lr_vit": "",
    "lr_connector": "",
    "lr_llm": "",
    "rollout_n": "8",
    "rollout_temperature": "1.0",
    "rollout_max_response_length": "64",
    "iou_schedule": "0.5",
}


@pytest.fixture
def web(client, user):
    """The test client logged in as ``user`` (the owner of ``project``)."""
    client.force_login(user)
    return client


@pytest.fixture
def enqueued(monkeypatch) -> list[tuple]:
    """Tasks the launch sends by name, recorded instead of sent to the broker."""
    calls: list[tuple] = []
    monkeypatch.setattr("control.services.runs.enqueue_task", lambda *args: calls.append(args))
    return calls


def _form(sources: dict, **changes: str) -> dict:
    """A submission of the form as the page shows it for tiny-cpu-demo, with ``sources`` {source: weight}."""
    data = {
        "name": "mix of two",
        "description": "",
        "preset": "tiny-cpu-demo",
        "total_steps": "3",
        "compute_target": "local",
        "num_cpus": "1",
        "num_gpus": "0",
        "advanced": "",
        **TINY,
        "source": [str(s.pk) for s in sources],
    }
    data.update({f"weight_{s.pk}": str(w) for s, w in sources.items()})
    data.update(changes)
    return data


def _field_error(response, place: str) -> str:
    """The text shown beside ``place`` (a form field, ``sources``, ``advanced`` or ``weight_<id>``)."""
    page = response.content.decode()
    match = re.search(rf'<p class="field-error" id="err-{re.escape(place)}">(.*?)</p>', page, re.S)
    assert match, f"no error box for {place}"
    return html.unescape(match.group(1)).strip()


def _all_field_errors(response) -> dict[str, str]:
    page = response.content.decode()
    found = re.findall(r'<p class="field-error" id="err-([^"]+)">(.*?)</p>', page, re.S)
    return {place: html.unescape(text).strip() for place, text in found if text.strip()}


def _input_value(response, name: str) -> str:
    page = response.content.decode()
    match = re.search(
        rf'<input id="f-{re.escape(name)}" name="{re.escape(name)}" [^>]*?value="([^"]*)"', page
    )
    assert match, f"no input {name}"
    return html.unescape(match.group(1))


def _checked(response) -> dict[str, str]:
    """Checked sources of the page's table and the weight shown for each, by name."""
    page = response.content.decode()
    rows = re.findall(
        r'<tr data-source-id="(\d+)" data-task="[^"]*" data-name="([^"]*)">(.*?)</tr>', page, re.S
    )
    out = {}
    for _, name, cells in rows:
        if re.search(r'name="source" value="\d+" checked', cells):
            out[html.unescape(name)] = re.search(r'class="weight"[^>]*value="([^"]*)"', cells).group(1)
    return out


# ------------------------------------------------------------------------------------------ the page


def test_the_form_lists_sources_targets_and_the_preset_defaults(web, project, demo_sources, settings):
    settings.TRIUNE_RAY_CPUS = 4.0
    settings.TRIUNE_RAY_GPUS = 0.0
    response = web.get(f"/projects/{project.pk}/runs/new/")
    assert response.status_code == 200
    page = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in page
    rows = re.findall(r'<tr data-source-id="(\d+)" data-task="([^"]*)" data-name="([^"]*)">', page)
    assert [(name, task) for _, task, name in rows] == [
        (name, source.task_type) for name, source in sorted(demo_sources.items())
    ]
    detection = demo_sources["synth_detection"]
    row = re.search(rf'<tr data-source-id="{detection.pk}".*?</tr>', page, re.S).group(0)
    cells = dict(re.findall(r'<td class="(task|train|test)">([^<]*)</td>', row))
    assert cells == {"task": "detection", "train": "12", "test": "4"}
    # 16 samples per source, a quarter held out for test.
    assert (detection.train_count, detection.test_count) == (12, 4)
    assert _checked(response) == {}
    assert '<option value="local" data-cpu="4" data-gpu="0"' in page
    assert "local (4 CPU, 0 GPU)" in page
    assert {name: _input_value(response, name) for name in TINY} == TINY
    assert _input_value(response, "total_steps") == "150"
    assert '<option value="tiny-cpu-demo" selected>' in page
    # Every preset's values travel with the page, for the script to refill the fields.
    presets = re.search(r'<script id="preset-values" type="application/json">(.*?)</script>', page).group(1)
    assert '"vtriune-7b": {"model_path": "<path/to/Qwen2.5-VL-7B-Instruct>"' in html.unescape(
        presets.replace("\\u003C", "<").replace("\\u003E", ">")
    )
    assert _all_field_errors(response) == {}


def test_the_project_page_links_to_the_form(web, project):
    page = web.get(f"/projects/{project.pk}/").content.decode()
    assert f'href="/projects/{project.pk}/runs/new/">New run</a>' in page


def test_a_launch_queues_a_run_with_its_mixture_and_only_the_changed_fields(
    web, project, demo_sources, enqueued, user, django_capture_on_commit_callbacks
):
    math, detection = demo_sources["synth_math"], demo_sources["synth_detection"]
    data = _form(
        {math: 1, detection: 3},
        description=HOSTILE,
        rollout_n="4",
        warm_start_steps="300",
        warm_start_target="0.5",
        lr_llm="1e-4",
        iou_schedule="0.1:0.85, 0.25:0.95, 1.0:0.99",
        advanced="eval:\n  every: 0\n",
    )
    # Weights of unchecked sources are ignored.
    data[f"weight_{demo_sources['synth_ocr'].pk}"] = "5"
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(f"/projects/{project.pk}/runs/new/", data)
    run = Run.objects.get()
    assert response.status_code == 302
    assert response["Location"] == f"/runs/{run.pk}/"
    assert run.status == "queued"
    assert enqueued == [(SUBMIT_TASK, run.pk)]
    assert (run.name, run.description, run.preset, run.total_steps) == (
        "mix of two",
        HOSTILE,
        "tiny-cpu-demo",
        3,
    )
    assert (run.compute_target, run.num_cpus, run.num_gpus, run.created_by, run.cloned_from) == (
        "local",
        1.0,
        0.0,
        user,
        None,
    )
    assert run.config == {
        "model": {"lr": {"llm": 1e-4}},
        "warm_start": {"steps": 300, "target_accuracy": 0.5},
        "rollout": {"n": 4},
        "reward": {"iou_schedule": [[0.1, 0.85], [0.25, 0.95], [1.0, 0.99]]},
        "eval": {"every": 0},
    }
    mixture = {item.data_source.name: item.weight for item in run.run_sources.select_related("data_source")}
    assert mixture == {"synth_math": 1.0, "synth_detection": 3.0}
    # The run page says it was queued.
    page = web.get(response["Location"]).content.decode()
    assert "Run mix of two is queued." in page


def test_a_form_left_at_the_preset_gives_an_empty_config(
    web, project, demo_sources, enqueued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(f"/projects/{project.pk}/runs/new/", _form({demo_sources["synth_ocr"]: 2}))
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.config == {}
    # An empty box keeps the preset's value too.
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(
            f"/projects/{project.pk}/runs/new/",
            _form({demo_sources["synth_ocr"]: 2}, algo_lr="", model_path="", iou_schedule=""),
        )
    assert response.status_code == 302
    assert Run.objects.latest("id").config == {}
    assert len(enqueued) == 2


# ------------------------------------------------------------------------------------------ refusals

GRPO_ONE = (
    "GRPO needs at least 2 responses per prompt (a group of one has advantage 0), got 1; set rollout.n >= 2"
)
LR_KEYS = (
    "adv_estimator, advantage_sign, clip_high, clip_low, dual_clip_c, dynamic_sampling, entropy_coef, "
    "grad_clip, group_by_length, kl, logprob_micro_batch_size, lr, max_nan_steps, micro_batch_size, "
    "micro_batch_tokens, mini_batch_size, "
    "ppo_epochs, remove_padding, warmup_ratio, weight_decay"
)
PLACEHOLDER = (
    "'<path/to/Qwen2.5-VL-7B-Instruct>' is a placeholder; override it with model.path=/path/to/checkpoint"
)


@pytest.mark.parametrize(
    ("changes", "place", "message"),
    [
        ({"algo_lr": "-0.001"}, "algo_lr", "must be > 0, got -0.001"),
        ({"algo_lr": "fast"}, "algo_lr", "must be a number"),
        ({"lr_vit": "0"}, "lr_vit", "must be > 0, got 0.0"),
        ({"rollout_n": "1"}, "rollout_n", GRPO_ONE),
        ({"warm_start_steps": "-5"}, "warm_start_steps", "Ensure this value is greater than or equal to 0."),
        ({"warm_start_steps": "2.5"}, "warm_start_steps", "must be a whole number"),
        ({"warm_start_target": "1.5"}, "warm_start_target", "must be <= 1, got 1.5"),
        ({"warm_start_target": "most"}, "warm_start_target", "must be a number"),
        ({"rollout_temperature": "0"}, "rollout_temperature", "must be > 0, got 0.0"),
        (
            {"iou_schedule": "0.5:0.85, 0.25:0.95"},
            "iou_schedule",
            "fractions must increase strictly, got 0.25 after 0.5",
        ),
        (
            {"iou_schedule": "strict"},
            "iou_schedule",
            "write dynamic, average, a fixed threshold such as 0.9, or fraction:threshold pairs such as "
            "0.1:0.85, 0.25:0.95, 1.0:0.99; 'strict' is none of these",
        ),
        ({"iou_schedule": "1.5"}, "iou_schedule", "a fixed IoU threshold must be in [0.5, 0.99], got 1.5"),
        (
            {"advanced": "eval: {every: 0\n"},
            "advanced",
            "invalid YAML at line 2, column 1: expected ',' or '}', but got '<stream end>'",
        ),
        (
            {"advanced": "algo:\n  lrr: 0.1\n"},
            "advanced",
            f"config.algo.lrr: unknown key; did you mean lr? known keys: {LR_KEYS}",
        ),
        (
            {"advanced": "- eval"},
            "advanced",
            "must be a YAML mapping of config sections, such as 'algo: {warmup_ratio: 0.1}'; got a list",
        ),
        (
            {"advanced": "output_dir: /tmp/elsewhere"},
            "advanced",
            "config.output_dir: the platform puts a run's output under its storage folder; remove "
            "config.output_dir",
        ),
        # A field set in the advanced box is blamed there, not beside the field.
        ({"advanced": "algo: {lr: -1.0}"}, "advanced", "config.algo.lr: must be > 0, got -1.0"),
        (
            {"num_gpus": "1"},
            "num_gpus",
            "the run asks for 1 GPU(s) but compute target 'local' offers 0; set num_gpus to at most 0 or "
            "choose a compute target that offers more",
        ),
        ({"num_gpus": "-1"}, "num_gpus", "Ensure this value is greater than or equal to 0."),
        ({"total_steps": "0"}, "total_steps", "Ensure this value is greater than or equal to 1."),
        ({"name": ""}, "name", "This field is required."),
        (
            {"compute_target": "moon-cluster"},
            "compute_target",
            "compute target 'moon-cluster' does not exist; choose one of: local",
        ),
        ({"preset": "vtriune-7b", "model_path": ""}, "model_path", PLACEHOLDER),
    ],
    ids=[
        "lr-negative",
        "lr-not-a-number",
        "group-lr-zero",
        "grpo-group-of-one",
        "warm-start-negative",
        "warm-start-fraction",
        "warm-start-target-above-one",
        "warm-start-target-not-a-number",
        "temperature-zero",
        "iou-fractions-decrease",
        "iou-unreadable",
        "iou-out-of-range",
        "yaml-broken",
        "advanced-unknown-key",
        "advanced-not-a-mapping",
        "advanced-platform-field",
        "advanced-sets-a-form-field",
        "too-many-gpus",
        "negative-gpus",
        "no-steps",
        "no-name",
        "unknown-target",
        "placeholder-model",
    ],
)
def test_a_refused_launch_shows_the_message_beside_its_field_and_creates_nothing(
    web,
    project,
    demo_sources,
    enqueued,
    settings,
    django_capture_on_commit_callbacks,
    changes,
    place,
    message,
):
    settings.TRIUNE_RAY_GPUS = 0.0
    math = demo_sources["synth_math"]
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = web.post(f"/projects/{project.pk}/runs/new/", _form({math: 2}, **changes))
    assert response.status_code == 400
    assert _all_field_errors(response) == {place: message}
    assert "Nothing was launched:" in response.content.decode()
    assert Run.objects.count() == 0
    assert (callbacks, enqueued) == ([], [])
    # The page keeps what was typed, the mixture included.
    assert _checked(response) == {"synth_math": "2"}
    for name, value in changes.items():
        if name not in ("advanced", "preset", "compute_target"):
            assert _input_value(response, name) == value


def test_no_source_checked_is_shown_beside_the_table(web, project, demo_sources, enqueued):
    response = web.post(f"/projects/{project.pk}/runs/new/", _form({}))
    assert response.status_code == 400
    assert _all_field_errors(response) == {
        "sources": "a run needs at least one data source; check one in the table"
    }
    assert Run.objects.count() == 0


def test_a_weight_of_zero_is_shown_beside_that_weight(web, project, demo_sources, enqueued):
    math, ocr = demo_sources["synth_math"], demo_sources["synth_ocr"]
    response = web.post(f"/projects/{project.pk}/runs/new/", _form({math: 1, ocr: 0}))
    assert response.status_code == 400
    assert _all_field_errors(response) == {
        f"weight_{ocr.pk}": "weight of synth_ocr must be a number > 0 and <= 1e+09, got 0"
    }
    assert _checked(response) == {"synth_math": "1", "synth_ocr": "0"}
    assert Run.objects.count() == 0


def test_a_source_without_a_test_split_is_blamed_on_the_sources(web, project, demo_sources, enqueued):
    math = demo_sources["synth_math"]
    math.files = {"train": math.files["train"], "test": []}
    math.save(update_fields=["files"])
    response = web.post(f"/projects/{project.pk}/runs/new/", _form({math: 1}))
    assert response.status_code == 400
    errors = _all_field_errors(response)
    assert list(errors) == ["sources"]
    assert errors["sources"].startswith("evaluation is on but data source 'synth_math' has no test split")
    assert Run.objects.count() == 0


def test_a_source_of_another_project_is_refused(
    web, project, demo_sources, make_project, make_source, other_user
):
    theirs = make_source(make_project(other_user), name="secret")
    data = _form({demo_sources["synth_math"]: 1})
    data["source"].append(str(theirs.pk))
    response = web.post(f"/projects/{project.pk}/runs/new/", data)
    assert response.status_code == 400
    assert _all_field_errors(response) == {
        "sources": f"data source '{theirs.pk}' does not exist in this project"
    }
    assert Run.objects.count() == 0


# ------------------------------------------------------------------------------------------ access


def test_a_viewer_is_refused(client, project, demo_sources, viewer, enqueued):
    client.force_login(viewer)
    url = f"/projects/{project.pk}/runs/new/"
    for response in (client.get(url), client.post(url, _form({demo_sources["synth_math"]: 1}))):
        assert response.status_code == 403
        assert f"you are a viewer of project {project.pk}; ask an owner for the member role" in (
            response.content.decode()
        )
    assert Run.objects.count() == 0


def test_a_member_may_launch(client, project, demo_sources, make_user, add_member, enqueued):
    member = make_user("mia")
    add_member(project, member, "member")
    client.force_login(member)
    response = client.post(f"/projects/{project.pk}/runs/new/", _form({demo_sources["synth_math"]: 1}))
    assert response.status_code == 302
    assert Run.objects.get().created_by == member


def test_a_foreign_project_or_run_is_404(client, project, demo_sources, other_user, make_run, enqueued):
    run = make_run(project, sources=[demo_sources["synth_math"]])
    client.force_login(other_user)
    for url in (f"/projects/{project.pk}/runs/new/", f"/runs/{run.pk}/clone/"):
        assert client.get(url).status_code == 404, url
        assert client.post(url, _form({demo_sources["synth_math"]: 1})).status_code == 404, url
    assert client.get("/projects/999999/runs/new/").status_code == 404
    assert Run.objects.count() == 1


def test_anonymous_is_sent_to_login(client, project):
    url = f"/projects/{project.pk}/runs/new/"
    response = client.get(url)
    assert (response.status_code, response["Location"]) == (302, f"/login/?next={url}")


def test_a_post_without_the_csrf_token_is_refused(user, project, demo_sources, enqueued):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    response = browser.post(f"/projects/{project.pk}/runs/new/", _form({demo_sources["synth_math"]: 1}))
    assert response.status_code == 403
    assert Run.objects.count() == 0


# ------------------------------------------------------------------------------------------ clone


def test_clone_prefills_the_form_and_launches_a_new_run(
    web, project, demo_sources, user, enqueued, django_capture_on_commit_callbacks
):
    from control.services.runs import SourceWeight, run_create

    math, detection = demo_sources["synth_math"], demo_sources["synth_detection"]
    origin = run_create(
        project=project,
        user=user,
        name=HOSTILE,
        description="the first try",
        sources=[SourceWeight(math, 2.0), SourceWeight(detection, 6.0)],
        config={
            "algo": {"lr": 1e-4, "warmup_ratio": 0.1},
            "reward": {"iou_schedule": [[0.1, 0.85], [1.0, 0.99]]},
            "eval": {"every": 0},
        },
        total_steps=7,
        num_cpus=2.0,
    )
    response = web.get(f"/runs/{origin.pk}/clone/")
    assert response.status_code == 200
    page = response.content.decode()
    assert HOSTILE not in page
    assert html.escape(HOSTILE) in page
    assert _checked(response) == {"synth_detection": "6.0", "synth_math": "2.0"}
    assert _input_value(response, "name") == f"{HOSTILE} (clone)"
    assert _input_value(response, "algo_lr") == "0.0001"
    assert _input_value(response, "iou_schedule") == "0.1:0.85, 1.0:0.99"
    assert _input_value(response, "rollout_n") == "8"  # the preset's
    assert (_input_value(response, "total_steps"), _input_value(response, "num_cpus")) == ("7", "2.0")
    advanced = re.search(r'<textarea id="f-advanced"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    assert html.unescape(advanced) == "algo:\n  warmup_ratio: 0.1\neval:\n  every: 0\n"
    assert f'action="/runs/{origin.pk}/clone/"' in page

    # Submitted as shown: a new queued run with the same mixture and config, and the original untouched.
    data = _form({math: "2.0", detection: "6.0"}, name="second try", total_steps="7", num_cpus="2.0")
    data.update(algo_lr="0.0001", iou_schedule="0.1:0.85, 1.0:0.99", advanced=html.unescape(advanced))
    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(f"/runs/{origin.pk}/clone/", data)
    clone = Run.objects.exclude(pk=origin.pk).get()
    assert response["Location"] == f"/runs/{clone.pk}/"
    assert (clone.status, clone.cloned_from, clone.total_steps, clone.num_cpus) == ("queued", origin, 7, 2.0)
    assert clone.config == origin.config
    mixture = {item.data_source.name: item.weight for item in clone.run_sources.select_related("data_source")}
    assert mixture == {"synth_math": 2.0, "synth_detection": 6.0}
    assert enqueued == [(SUBMIT_TASK, clone.pk)]
    origin.refresh_from_db()
    assert (origin.status, origin.run_sources.count()) == ("pending", 2)


def test_a_refused_clone_creates_nothing(web, project, demo_sources, make_run, enqueued):
    origin = make_run(project, sources=[demo_sources["synth_math"]])
    response = web.post(f"/runs/{origin.pk}/clone/", _form({demo_sources["synth_math"]: 1}, rollout_n="1"))
    assert response.status_code == 400
    assert _all_field_errors(response) == {"rollout_n": GRPO_ONE}
    assert Run.objects.count() == 1

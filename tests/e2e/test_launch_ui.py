"""The launch form in a real browser: filter the sources, weigh the mixture, a refusal, then a launch.

Screenshots of the form (with its error, and on a narrow screen) and of the run page after the
launch are saved under var/screenshots/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, login

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"
SCREENSHOTS = ROOT / "var" / "screenshots"


@pytest.fixture
def launchable(make_user, make_project, storage_dir, synth_files):
    """A member's project holding the eight synthetic sources, with real files in the server's storage."""
    from control.services.data import data_source_update
    from control.services.datasets import dataset_version_create
    from control.services.ingest import StagedFile

    user = make_user("lena", password=PASSWORD)
    project = make_project(user, "launch <b>demo</b>")
    files = [StagedFile(p.name, p) for p in sorted(Path(synth_files).glob("*.parquet"))]
    version = dataset_version_create(project=project, user=user, name="synthetic", files=files).version
    sources = {source.name: source for source in version.sources.all()}
    for name in ("synth_detection", "synth_grounding", "synth_counting"):
        data_source_update(source=sources[name], tag_names=["perception"])
    return project, sources


def _visible_sources(page) -> list[str]:
    return page.eval_on_selector_all(
        "#source-rows tr[data-source-id]", "rows => rows.filter(r => !r.hidden).map(r => r.dataset.name)"
    )


def _row(page, name: str):
    return page.locator(f'#source-rows tr[data-name="{name}"]')


def test_filter_weigh_refuse_then_launch(page, live_server_url, launchable):
    from control.models import Run

    project, sources = launchable
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.set_viewport_size({"width": 1280, "height": 800})
    login(page, live_server_url, "lena", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/")
    page.click("text=New run")
    page.wait_for_url(f"**/projects/{project.pk}/runs/new/")
    assert page.input_value("#f-algo_lr") == "0.0004"
    assert page.input_value("#f-model_path") == "tiny:qwen3_vl:tiny"
    assert "local (" in page.locator("#f-compute_target option").first.inner_text()
    assert page.locator("#target-offers").inner_text().startswith("Offers ")

    # Another preset refills the fields still showing the previous preset's values; an edited one stays.
    page.fill("#f-rollout_n", "6")
    page.select_option("#f-preset", "vtriune-7b")
    assert page.input_value("#f-model_path") == "<path/to/Qwen2.5-VL-7B-Instruct>"
    assert (page.input_value("#f-algo_lr"), page.input_value("#f-iou_schedule")) == ("1e-06", "dynamic")
    assert (page.input_value("#f-rollout_max_response_length"), page.input_value("#f-rollout_n")) == (
        "2048",
        "6",
    )
    page.select_option("#f-preset", "tiny-cpu-demo")
    assert (page.input_value("#f-algo_lr"), page.input_value("#f-iou_schedule")) == ("0.0004", "0.5")
    page.fill("#f-rollout_n", "8")

    # Filter by task type, then by tag; a hidden checked source stays in the mixture.
    page.select_option("#filter-task", "detection")
    assert _visible_sources(page) == ["synth_detection"]
    _row(page, "synth_detection").locator("input[name=source]").check()
    _row(page, "synth_detection").locator("input.weight").fill("3")
    assert _row(page, "synth_detection").locator(".share").inner_text() == "100.0 %"
    page.select_option("#filter-task", "")
    page.select_option("#filter-tag", "perception")
    assert _visible_sources(page) == ["synth_counting", "synth_detection", "synth_grounding"]
    page.select_option("#filter-tag", "")
    page.select_option("#filter-task", "math")
    assert _visible_sources(page) == ["synth_math"]
    assert page.locator("#filter-count").inner_text() == (
        "1 of 8 sources shown; 1 checked source(s) hidden by the filter"
    )
    _row(page, "synth_math").locator("input[name=source]").check()
    # 3 / (3 + 1) = 75 %, 1 / (3 + 1) = 25 %
    assert _row(page, "synth_math").locator(".share").inner_text() == "25.0 %"
    assert page.locator("#mixture .mix").all_inner_texts() == ["synth_detection 75.0 %", "synth_math 25.0 %"]
    _row(page, "synth_math").locator("input.weight").fill("2")
    # 3 / 5 = 60 %, 2 / 5 = 40 %
    assert page.locator("#mixture .mix").all_inner_texts() == ["synth_detection 60.0 %", "synth_math 40.0 %"]
    page.select_option("#filter-task", "")
    assert len(_visible_sources(page)) == 8

    # A negative learning rate: the page comes back with the message beside the field, nothing queued.
    page.fill("#f-name", "browser <i>run</i>")
    page.fill("#f-total_steps", "3")
    page.fill("#f-algo_lr", "-0.001")
    page.click("#launch-submit")
    error = page.locator("#err-algo_lr")
    error.wait_for()
    assert error.inner_text() == "must be > 0, got -0.001"
    assert page.locator("#f-algo_lr").get_attribute("aria-invalid") == "true"
    assert page.get_by_role("alert").inner_text().startswith("Nothing was launched:")
    assert Run.objects.count() == 0
    # What was typed is kept: the mixture, its shares and the fields.
    assert page.locator("#mixture .mix").all_inner_texts() == ["synth_detection 60.0 %", "synth_math 40.0 %"]
    assert page.input_value("#f-name") == "browser <i>run</i>"
    page.screenshot(path=str(SCREENSHOTS / "launch-form-error.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    overflow = page.evaluate("() => document.getElementById('launch-form').scrollWidth - window.innerWidth")
    assert overflow <= 0
    page.screenshot(path=str(SCREENSHOTS / "launch-form-narrow.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})

    page.fill("#f-algo_lr", "0.0001")
    page.click("#launch-submit")
    page.wait_for_url(f"{live_server_url}/runs/*/")
    run = Run.objects.get()
    assert page.url == f"{live_server_url}/runs/{run.pk}/"
    assert page.get_by_role("heading", level=1).inner_text().startswith("browser <i>run</i>")
    assert page.get_by_role("status").first.inner_text() == "Run browser <i>run</i> is queued."
    assert run.status == "queued"
    assert run.config == {"algo": {"lr": 0.0001}}
    assert run.total_steps == 3
    mixture = {item.data_source.name: item.weight for item in run.run_sources.select_related("data_source")}
    assert mixture == {"synth_detection": 3.0, "synth_math": 2.0}
    page.screenshot(path=str(SCREENSHOTS / "launch-success.png"), full_page=True)


def test_clone_opens_the_form_filled_from_the_run(page, live_server_url, launchable):
    from control.models import Run
    from control.services.runs import SourceWeight, run_create

    project, sources = launchable
    origin = run_create(
        project=project,
        user=project.created_by,
        name="first",
        sources=[SourceWeight(sources["synth_ocr"], 3.0), SourceWeight(sources["synth_chart"], 1.0)],
        config={"rollout": {"n": 4}, "eval": {"every": 0}},
        total_steps=5,
    )
    login(page, live_server_url, "lena", PASSWORD)
    page.goto(f"{live_server_url}/runs/{origin.pk}/clone/")
    assert page.input_value("#f-name") == "first (clone)"
    assert page.input_value("#f-rollout_n") == "4"
    assert page.input_value("#f-advanced") == "eval:\n  every: 0\n"
    assert page.locator("#mixture .mix").all_inner_texts() == ["synth_chart 25.0 %", "synth_ocr 75.0 %"]
    page.click("#launch-submit")
    page.wait_for_url(f"{live_server_url}/runs/*/")
    clone = Run.objects.exclude(pk=origin.pk).get()
    assert page.url == f"{live_server_url}/runs/{clone.pk}/"
    assert (clone.status, clone.cloned_from_id, clone.config) == ("queued", origin.pk, origin.config)

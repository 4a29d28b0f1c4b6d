"""Data pages in a real browser: chunked resumable upload, refusals, source preview with boxes, scoring."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import login

pytestmark = pytest.mark.e2e

PASSWORD = "pw-for-tests-123"
SOURCES = [
    "synth_chart",
    "synth_counting",
    "synth_detection",
    "synth_grounding",
    "synth_math",
    "synth_ocr",
    "synth_puzzle",
    "synth_science",
]
HOSTILE = '<img src=x onerror="window.__pwned=1">'


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Path]:
    """The Orsta-layout parquet files of a small synthetic corpus: 8 sources x 4 samples (3 train, 1 test)."""
    from trainer.data.synth import generate_dataset

    out = tmp_path_factory.mktemp("corpus")
    generate_dataset(str(out), per_source=4, image_size=112)
    return sorted(out.glob("*.parquet"))


def _fill_upload_form(page, files, name: str) -> None:
    page.set_input_files("#upload-files", [str(f) for f in files])
    page.fill("input[name=name]", name)


def test_upload_resumes_after_failed_chunks_and_same_bytes_give_the_existing_version(
    page, live_server_url, make_user, make_project, corpus
):
    from control.models import DatasetVersion, DataSource, Upload
    from control.services.ingest import StagedFile, content_hash

    user = make_user("uma", password=PASSWORD)
    project = make_project(user, "orsta")
    login(page, live_server_url, "uma", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/")
    page.click("text=Upload a dataset")
    page.wait_for_url(f"**/projects/{project.pk}/datasets/upload/")

    # Several chunks per file, and two injected failures on the first file that reaches them:
    # the chunk at byte 4096 reaches the server but its answer is lost; the next one (byte 8192)
    # never arrives. The page must ask the server where to resume both times.
    page.eval_on_selector("#upload-form", "f => { f.dataset.chunkBytes = '4096'; }")
    injected: list[str] = []

    def flaky(route):
        request = route.request
        sent = request.headers.get("content-range", "")
        if request.method == "PUT" and sent.startswith("bytes 4096-") and "answer lost" not in injected:
            injected.append("answer lost")
            route.fetch()
            route.abort()
        elif request.method == "PUT" and sent.startswith("bytes 8192-") and "never sent" not in injected:
            injected.append("never sent")
            route.abort()
        else:
            route.continue_()

    page.route("**/api/v1/uploads/*/", flaky)
    _fill_upload_form(page, corpus, "orsta")
    page.click("#upload-submit")

    result = page.locator(".result.created")
    result.wait_for()
    assert injected == ["answer lost", "never sent"]
    assert page.locator("#overall-percent").inner_text() == "100 %"
    assert page.locator("#upload-file-rows .percent").all_inner_texts() == ["100 %"] * len(corpus)
    assert page.locator("#upload-file-rows .state").all_inner_texts() == ["uploaded"] * len(corpus)
    assert result.locator("h2").inner_text() == "Created version 1 of dataset orsta"
    rows = result.locator(".result-sources tbody tr")
    assert rows.locator("td:first-child").all_inner_texts() == SOURCES
    detection = rows.filter(has_text="synth_detection").locator("td").all_inner_texts()
    assert detection == ["synth_detection", "detection", "detection", "3", "1"]

    # Every byte arrived once and in order: the version's hash is the hash of the local files.
    version = DatasetVersion.objects.get()
    assert version.content_hash == content_hash([StagedFile(p.name, p) for p in corpus])
    assert version.sample_count == 32
    assert DataSource.objects.filter(dataset_version=version).count() == 8
    assert Upload.objects.count() == 0

    page.unroute("**/api/v1/uploads/*/")
    page.reload()
    _fill_upload_form(page, corpus, "orsta")
    page.click("#upload-submit")
    existing = page.locator(".result.existing h2")
    existing.wait_for()
    assert existing.inner_text() == (
        "Existing version 1 of dataset orsta: the same bytes were uploaded before"
    )
    assert DatasetVersion.objects.count() == 1

    page.click("text=Datasets >> nth=0")
    page.locator('tr[data-version="1"]').wait_for()
    assert page.locator('tr[data-version="1"] code').inner_text() == version.content_hash[:12]


def test_refused_uploads_show_why_and_leave_nothing(page, live_server_url, make_user, make_project, tmp_path):
    from control.models import DatasetVersion, Upload
    from trainer.data.reader import write_parquet
    from trainer.data.synth import generate_rows

    user = make_user("ulf", password=PASSWORD)
    project = make_project(user, "broken")
    login(page, live_server_url, "ulf", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/datasets/upload/")

    broken = tmp_path / "train_math_synth_math_4.parquet"
    broken.write_bytes(b"PAR1 this is not parquet")
    _fill_upload_form(page, [broken], "broken")
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.click("#upload-submit")
    assert deleted.value.status == 204
    error = page.locator(".result.failed .upload-error")
    assert error.inner_text().startswith("train_math_synth_math_4.parquet: not a readable parquet file")
    assert page.locator(".row-errors").count() == 0

    # A readable file with one invalid row (format_ratio 1.5) lists the row in a table.
    rows = list(generate_rows("math", 1, 4, image_size=112))
    bad = {**rows[0], "reward_model": {**rows[0]["reward_model"], "format_ratio": 1.5}}
    mixed = tmp_path / "mixed.parquet"
    write_parquet([*rows, bad], str(mixed))
    page.reload()
    _fill_upload_form(page, [mixed], "mixed")
    with page.expect_response(lambda r: r.request.method == "DELETE"):
        page.click("#upload-submit")
    message = page.locator(".result.failed .upload-error").inner_text()
    # 3 valid rows + the bad one: row 4 of 4.
    assert message.startswith(
        "1 of 4 samples are invalid (first: mixed.parquet row 4, reward_model.format_ratio"
    )
    cells = page.locator(".row-errors tbody tr").first.locator("td").all_inner_texts()
    assert cells[:3] == ["mixed.parquet", "4", "reward_model.format_ratio"]
    assert "1.5" in cells[3]
    # The full error list downloads as CSV with the page's session.
    csv_url = page.locator(".result.failed a.errors-csv").get_attribute("href")
    download = page.request.get(live_server_url + csv_url)
    assert download.status == 200
    lines = download.text().splitlines()
    assert lines[0] == "file,row,field,message"
    assert lines[1].startswith("mixed.parquet,4,reward_model.format_ratio,")

    assert DatasetVersion.objects.count() == 0
    assert Upload.objects.count() == 0


def _ingest(project, user, files, name):
    from control.services.datasets import dataset_version_create
    from control.services.ingest import StagedFile

    staged = [StagedFile(p.name, p) for p in files]
    return dataset_version_create(project=project, user=user, name=name, files=staged).version


def test_source_page_draws_boxes_and_scores_pasted_responses(
    page, live_server_url, make_user, make_project, corpus, storage_dir
):
    from control.models import DataSource
    from control.selectors.samples import sample_get
    from trainer.rewards import compute_reward

    user = make_user("sami", password=PASSWORD)
    project = make_project(user, "preview")
    version = _ingest(project, user, corpus, "orsta")
    detection = DataSource.objects.get(dataset_version=version, name="synth_detection")
    math = DataSource.objects.get(dataset_version=version, name="synth_math")

    login(page, live_server_url, "sami", PASSWORD)
    page.goto(f"{live_server_url}/projects/{project.pk}/sources/")
    page.click("text=synth_detection")
    page.wait_for_url(f"**/sources/{detection.pk}/")
    page.locator("#preview-range", has_text="1–3 of 3").wait_for()
    assert page.locator(".sample").count() == 3

    # Statistics drawn by Plotly from our static files.
    page.locator('.chart[data-chart="boxes-per-sample"] .main-svg').first.wait_for()

    # The first sample's image is loaded and its ground-truth boxes sit on it at x / 1000 * width.
    card = page.locator('.sample[data-index="0"]')
    image = card.locator(".sample-image img")
    image.wait_for()
    page.wait_for_function(
        "() => [...document.querySelectorAll('.sample img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    truth = sample_get(source=detection, split="train", index=0)["reward_model"]
    from control.services.preview import boxes_of

    boxes = boxes_of(truth)
    rects = card.locator("svg.boxes.truth rect")
    assert rects.count() == len(boxes) >= 1
    frame = image.bounding_box()
    for k, box in enumerate(boxes):
        x1, y1, x2, y2 = box["bbox_2d"]
        drawn = rects.nth(k).bounding_box()
        assert rects.nth(k).is_visible()
        # Chromium's bounding box of a stroked rect includes half the 2 px stroke on each side.
        assert drawn["x"] == pytest.approx(frame["x"] + x1 / 1000 * frame["width"], abs=1.5)
        assert drawn["y"] == pytest.approx(frame["y"] + y1 / 1000 * frame["height"], abs=1.5)
        assert drawn["width"] == pytest.approx((x2 - x1) / 1000 * frame["width"], abs=2.5)
        assert drawn["height"] == pytest.approx((y2 - y1) / 1000 * frame["height"], abs=2.5)
    assert card.locator("svg.boxes.truth text").all_text_contents() == [b["label"] for b in boxes]

    # Scoring the ground truth of a detection sample shows every component the server returned.
    card.locator("text=Paste the ground truth").click()
    card.locator("button", has_text="Score").click()
    table = card.locator("table.score")
    table.wait_for()
    expected = compute_reward(truth["ground_truth"], truth, image_size=(112, 112))
    shown = dict(
        zip(
            table.locator("td.key").all_inner_texts(),
            table.locator("td.value").all_inner_texts(),
            strict=True,
        )
    )
    assert set(shown) == {*expected, "iou_threshold"}
    for key, value in expected.items():
        assert float(shown[key]) == pytest.approx(value, abs=5e-5), key
    assert shown["iou_threshold"] == "0.8500"  # dynamic schedule at step 0 of 1: 0/1 <= 0.10

    # A math sample: the ground truth pasted as the response is correct.
    page.goto(f"{live_server_url}/sources/{math.pk}/")
    card = page.locator('.sample[data-index="0"]')
    ground_truth = card.locator(".ground-truth").inner_text()
    assert ground_truth.startswith("\\boxed{")
    card.locator("textarea").fill(ground_truth)
    card.locator("button", has_text="Score").click()
    card.locator("table.score").wait_for()
    assert card.locator('tr[data-key="accuracy_reward"] td.value').inner_text() == "1.0"
    # final = (1.0 * accuracy 1 + 0.1 * format 0) / (1.0 + 0.1) = 0.90909...
    assert card.locator('tr[data-key="final_reward"] td.value').inner_text() == "0.9091"

    # The test split pages separately.
    page.select_option("#preview-split", "test")
    page.locator("#preview-range", has_text="1–1 of 1").wait_for()
    assert page.locator(".sample").count() == 1


def test_source_data_is_shown_as_text_never_run(
    page, live_server_url, make_user, make_project, tmp_path, storage_dir
):
    from control.models import DataSource
    from trainer.data.reader import write_parquet
    from trainer.data.synth import generate_rows

    user = make_user("xena", password=PASSWORD)
    project = make_project(user, "hostile")
    row = next(generate_rows("math", 0, 1, image_size=112))
    row["prompt"] = [{"role": "user", "content": f"<image>{HOSTILE}"}]
    row["reward_model"] = {**row["reward_model"], "answer": HOSTILE}
    path = tmp_path / "train_math_synth_math_1.parquet"
    write_parquet([row], str(path))
    version = _ingest(project, user, [path], HOSTILE)
    source = DataSource.objects.get(dataset_version=version)

    login(page, live_server_url, "xena", PASSWORD)
    page.goto(f"{live_server_url}/sources/{source.pk}/")
    card = page.locator('.sample[data-index="0"]')
    card.wait_for()
    assert card.locator(".prompt").inner_text() == f"user: <image>{HOSTILE}"
    assert card.locator(".answer").inner_text() == HOSTILE
    assert card.locator(".sample-text img").count() == 0
    assert page.evaluate("() => window.__pwned") is None

"""The data pages with Django's test client: access, listing, filters, editing, escaping."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from control.models import DataSource
from control.services.data import data_source_update

pytestmark = pytest.mark.django_db

HOSTILE = '<script>alert("x")</script>'
HOSTILE_TAG = "<img src=x onerror=alert(1)>"


@pytest.fixture
def storage(settings, tmp_path) -> Path:
    root = tmp_path / "storage"
    root.mkdir()
    settings.STORAGE_URL = root.as_uri()
    return root


@pytest.fixture
def web(client, user):
    """The test client logged in as ``user`` (the owner of ``project``)."""
    client.force_login(user)
    return client


@pytest.fixture
def sources(project, make_source):
    """Four sources of ``project`` with tags, as the filter table below expects."""
    made = {
        "geo_math": make_source(project, "geo_math", "mathverify", "math"),
        "chart_qa": make_source(project, "chart_qa", "mathverify", "chart"),
        "v3det_train": make_source(project, "v3det_train", "detection", "detection"),
        "refcoco_grounding": make_source(project, "refcoco_grounding", "detection", "grounding"),
    }
    data_source_update(source=made["geo_math"], tag_names=["reasoning"])
    data_source_update(source=made["chart_qa"], tag_names=["reasoning", "charts"])
    data_source_update(source=made["v3det_train"], tag_names=["perception"])
    data_source_update(source=made["refcoco_grounding"], tag_names=["perception", "boxes"])
    return made


def _pages(source: DataSource) -> list[str]:
    p = source.project_id
    return [
        f"/projects/{p}/datasets/",
        f"/projects/{p}/datasets/upload/",
        f"/projects/{p}/sources/",
        f"/sources/{source.pk}/",
    ]


def _listed(response) -> list[str]:
    """Names of the source rows of the data-source table, in page order."""
    return re.findall(r'<tr data-source="([^"]*)">', response.content.decode())


# ----------------------------------------------------------------------------------------- access


def test_anonymous_is_sent_to_login(client, project, make_source):
    source = make_source(project)
    for url in _pages(source):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"] == f"/login/?next={url}"
    edit = client.post(f"/sources/{source.pk}/edit/", {"task_type": "math"})
    assert edit.status_code == 302
    assert edit["Location"].startswith("/login/")
    assert DataSource.objects.get(pk=source.pk).task_type == "math"


def test_non_member_gets_404_as_for_a_missing_object(client, project, make_source, other_user):
    source = make_source(project)
    client.force_login(other_user)
    for url in _pages(source):
        assert client.get(url).status_code == 404, url
    edit = client.post(f"/sources/{source.pk}/edit/", {"task_type": "ocr", "description": "mine now"})
    assert edit.status_code == 404
    source.refresh_from_db()
    assert (source.task_type, source.description) == ("math", "")


@pytest.mark.parametrize(
    "url", ["/projects/999999/datasets/", "/projects/999999/datasets/upload/", "/projects/999999/sources/"]
)
def test_missing_project_is_404(web, url):
    response = web.get(url)
    assert response.status_code == 404
    assert b"project 999999 does not exist or you are not a member of it" in response.content


def test_missing_source_is_404(web):
    response = web.get("/sources/999999/")
    assert response.status_code == 404
    assert b"data source 999999 does not exist or is not in one of your projects" in response.content


def test_pages_answer_get_only(web, project, make_source):
    source = make_source(project)
    for url in _pages(source):
        assert web.post(url).status_code == 405, url
    assert web.get(f"/sources/{source.pk}/edit/").status_code == 405


def test_member_sees_every_page_with_links_between_them(web, project, make_source):
    source = make_source(project)
    p = project.pk
    for url in _pages(source):
        response = web.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        # The shared layout links the project's data pages.
        assert f'href="/projects/{p}/datasets/"' in html
        assert f'href="/projects/{p}/sources/"' in html
    project_page = web.get(f"/projects/{p}/").content.decode()
    assert f'href="/projects/{p}/datasets/upload/"' in project_page
    assert f'href="/sources/{source.pk}/"' in project_page


def test_viewer_reads_but_gets_no_upload_form_and_cannot_edit(client, project, make_source, viewer):
    source = make_source(project)
    client.force_login(viewer)
    upload = client.get(f"/projects/{project.pk}/datasets/upload/").content.decode()
    assert "You are a viewer of this project" in upload
    assert 'id="upload-form"' not in upload
    page = client.get(f"/sources/{source.pk}/").content.decode()
    assert f'action="/sources/{source.pk}/edit/"' not in page
    refused = client.post(f"/sources/{source.pk}/edit/", {"task_type": "ocr"})
    assert refused.status_code == 403
    assert DataSource.objects.get(pk=source.pk).task_type == "math"


# ----------------------------------------------------------------------------------------- datasets


def test_datasets_page_lists_versions_with_their_sources(web, user, project, storage, tmp_path):
    from control.services.datasets import dataset_version_create
    from control.services.ingest import StagedFile
    from trainer.data.synth import generate_dataset

    corpus = tmp_path / "corpus"
    generate_dataset(str(corpus), tasks=["math", "detection"], per_source=4, image_size=112)
    files = [StagedFile(p.name, p) for p in sorted(corpus.glob("*.parquet"))]
    outcome = dataset_version_create(project=project, user=user, name="orsta", files=files)
    version = outcome.version

    html = web.get(f"/projects/{project.pk}/datasets/").content.decode()
    row = html[html.index('<tr data-version="1">') :]
    row = row[: row.index("</tr>")]
    assert "v1" in row
    assert f'<code title="{version.content_hash}">{version.content_hash[:12]}</code>' in row
    assert "<td>8</td>" in row  # 2 sources x 4 samples
    assert f"{version.size_bytes / 1024:.1f}\xa0KB" in row  # filesizeformat
    for source in DataSource.objects.filter(dataset_version=version):
        assert f'<a href="/sources/{source.pk}/">{source.name}</a>' in row
    # 4 samples at test fraction 0.2: round(0.8) = 1 test sample per source (generate_dataset).
    assert "detection · 3 train / 1 test" in row


def test_a_dataset_without_accepted_version_says_so(web, project):
    from control.models import Dataset

    Dataset.objects.create(project=project, name="refused")
    html = web.get(f"/projects/{project.pk}/datasets/").content.decode()
    assert "No version: no upload of this dataset was accepted." in html


def test_upload_page_carries_what_the_script_needs(web, project, settings):
    settings.TRIUNE_MAX_UPLOAD_BYTES = 12345
    html = web.get(f"/projects/{project.pk}/datasets/upload/").content.decode()
    assert f'data-project-id="{project.pk}"' in html
    assert f'data-chunk-bytes="{8 * 1024 * 1024}"' in html
    assert 'data-max-bytes="12345"' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert '<input type="radio" name="policy" value="reject" checked>' in html
    assert "/static/webui/upload.js" in html


def test_upload_chunks_never_exceed_the_server_limit(web, project, settings):
    settings.TRIUNE_MAX_CHUNK_BYTES = 1000
    html = web.get(f"/projects/{project.pk}/datasets/upload/").content.decode()
    assert 'data-chunk-bytes="1000"' in html


# ----------------------------------------------------------------------------------------- sources


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["chart_qa", "geo_math", "refcoco_grounding", "v3det_train"]),
        ("?tag=reasoning", ["chart_qa", "geo_math"]),
        ("?tag=perception", ["refcoco_grounding", "v3det_train"]),
        ("?tag=boxes", ["refcoco_grounding"]),
        ("?tag=nothing-has-it", []),
        ("?task_type=detection", ["v3det_train"]),
        ("?task_type=grounding", ["refcoco_grounding"]),
        ("?task_type=ocr", []),
        ("?search=GEO", ["geo_math"]),
        ("?search=_", ["chart_qa", "geo_math", "refcoco_grounding", "v3det_train"]),
        ("?tag=perception&task_type=grounding", ["refcoco_grounding"]),
        ("?tag=reasoning&search=chart", ["chart_qa"]),
        ("?tag=reasoning&task_type=detection", []),
        ("?tag=&task_type=&search=", ["chart_qa", "geo_math", "refcoco_grounding", "v3det_train"]),
    ],
)
def test_source_filters(web, project, sources, query, expected):
    response = web.get(f"/projects/{project.pk}/sources/{query}")
    assert response.status_code == 200
    assert _listed(response) == expected


def test_an_invalid_filter_is_reported_and_not_applied(web, project, sources):
    response = web.get(f"/projects/{project.pk}/sources/?task_type=bogus&tag=perception")
    html = response.content.decode()
    assert "task_type: Select a valid choice. bogus is not one of the available choices." in html
    assert _listed(response) == ["refcoco_grounding", "v3det_train"]


def test_sources_of_other_projects_never_show(web, project, sources, make_project, other_user, make_source):
    theirs = make_project(other_user, "theirs")
    make_source(theirs, "secret_source")
    response = web.get(f"/projects/{project.pk}/sources/?search=secret")
    assert _listed(response) == []


def test_source_page_shows_facts_and_chart_data(web, project, make_source):
    source = make_source(project, "v3det_train", "detection", "detection")
    source.stats = {
        "answer_length_histogram": {"64": 2},
        "boxes_per_sample": {"1": 1, "3": 1},
        "image_sizes": {"112x112": 2},
    }
    source.save()
    html = web.get(f"/sources/{source.pk}/").content.decode()
    assert "10 train / 2 test" in html
    assert f'data-source-id="{source.pk}"' in html
    assert "/static/vendor/plotly/plotly-cartesian.min.js" in html
    match = re.search(r'<script id="stats-data" type="application/json">(.*?)</script>', html, re.S)
    charts = json.loads(match.group(1))
    assert [c["id"] for c in charts] == ["answer-length", "boxes-per-sample", "image-sizes"]
    assert charts[1] == {
        "id": "boxes-per-sample",
        "title": "Boxes per sample",
        "xtitle": "boxes",
        "x": ["1", "3"],
        "y": [1, 1],
    }


def test_source_page_without_stats_says_so(web, project, make_source):
    html = web.get(f"/sources/{make_source(project).pk}/").content.decode()
    assert "No statistics were recorded for this source." in html
    assert 'id="stats-data"' not in html


# ----------------------------------------------------------------------------------------- editing


def test_edit_sets_tags_description_and_task_type(web, project, make_source):
    source = make_source(project, "v3det_train", "detection", "other")
    response = web.post(
        f"/sources/{source.pk}/edit/",
        {"tags": " perception, boxes,, perception ", "task_type": "detection", "description": "V3Det boxes"},
        follow=True,
    )
    assert response.redirect_chain == [(f"/sources/{source.pk}/", 302)]
    assert "Saved v3det_train." in response.content.decode()
    source.refresh_from_db()
    assert (source.task_type, source.description) == ("detection", "V3Det boxes")
    assert sorted(t.name for t in source.tags.all()) == ["boxes", "perception"]
    # The form shows the current values back (tags in name order).
    assert 'value="boxes, perception"' in response.content.decode()

    cleared = web.post(
        f"/sources/{source.pk}/edit/", {"tags": "", "task_type": "detection", "description": ""}
    )
    assert cleared.status_code == 302
    source.refresh_from_db()
    assert (list(source.tags.all()), source.description) == ([], "")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"task_type": "bogus"},
            "task_type: Select a valid choice. bogus is not one of the available choices.",
        ),
        ({}, "task_type: This field is required."),
        (
            {"task_type": "math", "tags": "ok, " + "t" * 65},
            "tags: tag &#x27;tttttttttttttttttttt&#x27;… is 65",
        ),
        (
            {"task_type": "math", "tags": ",".join(f"t{i}" for i in range(101))},
            "tags: at most 100 tags, got 101",
        ),
        ({"task_type": "math", "description": "d" * 5001}, "description: Ensure this value has at most 5000"),
    ],
)
def test_invalid_edits_change_nothing_and_say_why(web, project, make_source, data, message):
    source = make_source(project)
    data_source_update(source=source, tag_names=["keep"])
    response = web.post(f"/sources/{source.pk}/edit/", data, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    source.refresh_from_db()
    assert (source.task_type, source.description) == ("math", "")
    assert [t.name for t in source.tags.all()] == ["keep"]


def test_edit_needs_the_csrf_token(client, user, project, make_source):
    from django.test import Client

    source = make_source(project)
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post(f"/sources/{source.pk}/edit/", {"task_type": "ocr"}).status_code == 403
    assert DataSource.objects.get(pk=source.pk).task_type == "math"


# ----------------------------------------------------------------------------------------- escaping


def test_hostile_strings_are_escaped_on_every_page(web, user, project, make_source):
    from control.models import Dataset

    project.name = HOSTILE
    project.description = HOSTILE
    project.save()
    source = make_source(project, name=f"src{HOSTILE}")
    source.description = HOSTILE
    source.stats = {"image_sizes": {f"</script>{HOSTILE}": 3}}
    source.save()
    data_source_update(source=source, tag_names=[HOSTILE_TAG])
    Dataset.objects.filter(pk=source.dataset_version.dataset_id).update(name=HOSTILE, description=HOSTILE)

    urls = [*_pages(source), f"/projects/{project.pk}/", f"/projects/{project.pk}/sources/?search={HOSTILE}"]
    for url in urls:
        html = web.get(url).content.decode()
        assert "<script>alert" not in html, url
        assert "<img src=x" not in html, url
    sources_html = web.get(f"/projects/{project.pk}/sources/").content.decode()
    assert "&lt;img src=x onerror=alert(1)&gt;" in sources_html
    assert "src&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in sources_html
    source_html = web.get(f"/sources/{source.pk}/").content.decode()
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in source_html
    # json_script escapes <, > and & inside the chart data, so the data cannot close its script tag.
    assert "\\u003C/script\\u003E" in source_html

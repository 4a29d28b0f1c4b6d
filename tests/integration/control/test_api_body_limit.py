"""A JSON body over the request limit is the API's JSON error (413 with the limit), not an HTML page."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("path", ["/api/v1/runs/", "/api/v1/projects/", "/api/v1/alert-rules/"])
def test_a_body_over_the_limit_is_a_json_413_with_the_limit(
    client_for, user, project, settings, path
) -> None:
    from control.models import Run

    body = json.dumps({"project": project.pk, "name": "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1)})
    response = client_for(user).generic("POST", path, body, content_type="application/json")
    assert response.status_code == 413
    assert response.headers["Content-Type"].startswith("application/json")
    payload = response.json()
    assert (
        payload["code"] == "too_large" and payload["extra"]["limit"] == settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    )
    assert "/api/v1/uploads/" in payload["message"]
    assert Run.objects.count() == 0


def test_more_files_than_a_request_may_hold_is_a_json_400_with_the_limit(
    client_for, user, project, settings
) -> None:
    """Found by the API fuzzer: 101 files in one multipart upload answered Django's HTML 400 page."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from control.models import Dataset

    limit = settings.DATA_UPLOAD_MAX_NUMBER_FILES
    files = [SimpleUploadedFile(f"part{i}.jsonl", b"{}\n") for i in range(limit + 1)]
    body = {"project": project.pk, "name": "many", "files": files}
    response = client_for(user).post("/api/v1/datasets/", body, format="multipart")
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {
        "message": f"the request holds more than the {limit} files a request may hold; send more files "
        "through /api/v1/uploads/ in chunks",
        "code": "too_many_files",
        "extra": {"limit": limit},
    }
    assert not Dataset.objects.filter(project=project).exists()


def test_more_fields_than_a_request_may_hold_is_a_json_400_with_the_limit(client_for, user, settings) -> None:
    limit = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
    body = "&".join(f"f{i}=x" for i in range(limit + 1))
    response = client_for(user).generic(
        "POST", "/api/v1/projects/", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.json() == {
        "message": f"the request holds more than the {limit} fields a request may hold",
        "code": "too_many_fields",
        "extra": {"limit": limit},
    }

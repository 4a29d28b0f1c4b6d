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

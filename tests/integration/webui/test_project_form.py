"""The new-project form: bad input is refused with a message, and nothing is created."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"name": "vision\x00rl"}, "name must not contain NUL characters"),
        ({"name": "vision rl", "description": "a\x00b"}, "description must not contain NUL characters"),
        ({"name": "   "}, "name must not be blank"),
    ],
)
def test_a_refused_project_says_why_and_creates_nothing(client, user, fields, message) -> None:
    from control.models import Project

    client.force_login(user)
    response = client.post("/projects/new/", fields, follow=True)
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Project.objects.count() == 0


def test_a_project_is_created_and_its_page_shown(client, user) -> None:
    from control.models import Project

    client.force_login(user)
    response = client.post("/projects/new/", {"name": "vision rl", "description": "GRPO"}, follow=True)
    assert response.status_code == 200 and "Project vision rl created." in response.content.decode()
    assert Project.objects.get().description == "GRPO"

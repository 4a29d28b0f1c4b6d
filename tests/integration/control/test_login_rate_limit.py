"""Login is rate-limited by django-axes: AXES_FAILURE_LIMIT wrong passwords for one username from one
address lock that pair out for the cool-off (429, a page that says so), even with the right password.

Failures are rows in the test's database, so a lockout never outlives its test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-123"  # make_user's
LIMIT = 5  # AXES_FAILURE_LIMIT by default


def _login(client: Client, username: str, password: str, *, page: str = "/login/", address: str = "10.0.0.1"):
    return client.post(page, {"username": username, "password": password}, REMOTE_ADDR=address)


def _fail_until_locked(client: Client, username: str, *, page: str = "/login/") -> list[int]:
    return [_login(client, username, "wrong", page=page).status_code for _ in range(LIMIT)]


def test_the_defaults():
    from django.conf import settings

    assert settings.AXES_FAILURE_LIMIT == LIMIT
    assert settings.AXES_LOCKOUT_PARAMETERS == [["username", "ip_address"]]
    assert settings.AXES_COOLOFF_TIME == timedelta(minutes=15)
    assert settings.AUTHENTICATION_BACKENDS[0] == "axes.backends.AxesStandaloneBackend"
    assert settings.MIDDLEWARE[-1] == "axes.middleware.AxesMiddleware"


def test_wrong_passwords_lock_the_username_out_with_a_429_page(make_user):
    make_user("olivia")
    client = Client()
    statuses = _fail_until_locked(client, "olivia")
    # Four refusals show the form again; the fifth is the lockout.
    assert statuses == [200] * (LIMIT - 1) + [429]
    locked = _login(client, "olivia", PASSWORD)
    assert locked.status_code == 429
    page = locked.content.decode()
    assert "Too many login attempts" in page and "5 wrong passwords" in page and "0:15:00" in page
    assert "_auth_user_id" not in client.session  # the right password did not sign in


def test_a_lockout_is_for_that_username_from_that_address_only(make_user):
    make_user("olivia")
    make_user("mia")
    _fail_until_locked(Client(), "olivia")
    assert _login(Client(), "mia", PASSWORD).status_code == 302  # another user, same address
    assert _login(Client(), "olivia", PASSWORD, address="10.0.0.2").status_code == 302  # another address
    assert _login(Client(), "olivia", PASSWORD).status_code == 429


def test_the_lockout_ends_after_the_cool_off(make_user):
    from axes.models import AccessAttempt

    make_user("olivia")
    _fail_until_locked(Client(), "olivia")
    # 16 minutes later, as the clock would have it.
    AccessAttempt.objects.update(
        attempt_time=AccessAttempt.objects.get().attempt_time - timedelta(minutes=16)
    )
    assert _login(Client(), "olivia", PASSWORD).status_code == 302


def test_a_successful_login_clears_earlier_failures(make_user):
    make_user("olivia")
    client = Client()
    for _ in range(LIMIT - 1):
        _login(client, "olivia", "wrong")
    assert _login(client, "olivia", PASSWORD).status_code == 302
    assert [_login(Client(), "olivia", "wrong").status_code for _ in range(LIMIT - 1)] == [200] * (LIMIT - 1)


def test_the_admin_login_is_rate_limited_too(make_user):
    make_user("root", is_staff=True, is_superuser=True)
    client = Client()
    statuses = _fail_until_locked(client, "root", page="/admin/login/")
    assert statuses[-1] == 429
    assert _login(client, "root", PASSWORD, page="/admin/login/").status_code == 429


def test_an_administrator_clears_a_lockout(make_user):
    from axes.utils import reset

    make_user("olivia")
    _fail_until_locked(Client(), "olivia")
    assert reset(username="olivia") == 1
    assert _login(Client(), "olivia", PASSWORD).status_code == 302


def test_tokens_and_sessions_keep_working_during_a_lockout(make_user, make_project, client_for):
    user = make_user("olivia")
    make_project(user, "vision")
    signed_in = Client()
    signed_in.force_login(user)
    _fail_until_locked(Client(), "olivia")
    # The API with a bearer token, and a browser that signed in before, are not logins: both go on.
    response = client_for(user).get("/api/v1/projects/")
    assert response.status_code == 200 and response.json()["count"] == 1
    assert signed_in.get("/").status_code == 200
    assert signed_in.get("/api/v1/projects/").status_code == 200

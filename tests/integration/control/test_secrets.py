"""Secrets stay secret: API token and run token values, webhook URLs and signing keys, passwords.

None of them appears in the server's logs (every logger captured at DEBUG while the platform is used,
refused and broken), in an error page or error body, or in API output to a caller who must not see
it. Who may see one: a token's value is shown once, to its maker, when it is made; a webhook URL
to the project's editors; a channel's signing key once, when the channel is made.
"""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
from django.http import HttpResponse
from django.urls import path
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

API = "/api/v1/"
HOOK_KEY = "abcdEFGHijklMNOPqrst"
# A closed loopback port (9, discard): a delivery fails and its failure is logged and recorded.
HOOK = f"http://127.0.0.1:9/services/T0123/B0456/{HOOK_KEY}"
ADMIN_PASSWORD = "correct-Horse-battery-staple-41"


@pytest.fixture
def secrets(world, make_user, settings):
    """The world's secrets, with the raw values of an owner's token and of its run's token."""
    from control.services.notifications import channel_create
    from control.services.tokens import api_token_create

    settings.TRIUNE_WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    hook = channel_create(project=world.project, user=world.owner, name="hook", kind="webhook", url=HOOK)
    make_user("root", password=ADMIN_PASSWORD, is_staff=True, is_superuser=True)
    return SimpleNamespace(
        api_token=api_token_create(user=world.owner, name="laptop")[1],
        run_token=api_token_create(user=world.owner, name="job", run=world.run)[1],
        hook=hook,
        hook_secret=hook.secret,
    )


@pytest.fixture
def shh(secrets):
    """The secret values, as a list to search for."""
    return [secrets.api_token, secrets.run_token, HOOK, HOOK_KEY, secrets.hook_secret, ADMIN_PASSWORD]


def _client(raw: str | None = None) -> APIClient:
    client = APIClient()
    if raw:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _leaks(text: str, values: list[str]) -> list[str]:
    return [value for value in values if value in text]


@pytest.fixture
def every_log(caplog):
    """Every log record of every logger, from DEBUG up (django.request included, which is set to ERROR)."""
    caplog.set_level(logging.DEBUG)
    for name in ("django", "django.request", "django.server", "axes", "control", "workers", "celery"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def _use_the_platform(world, secrets, client_for) -> list:
    """Use, refuse and break the platform the ways a day of work does; return every response."""
    from django.test import Client

    from control.services.notifications import DeliveryError, channel_send_test, delivery_send

    owner, run_job = _client(secrets.api_token), _client(secrets.run_token)
    viewer, outsider = client_for(world.viewer), client_for(world.stranger)
    hook = f"{API}notification-channels/{secrets.hook.pk}/"
    answers = [
        owner.get(API + "tokens/"),
        owner.get(f"{API}runs/{world.run.pk}/tokens/"),
        owner.get(API + "notification-channels/"),
        run_job.post(
            f"{API}runs/{world.run.pk}/metrics/",
            {"points": [{"step": 1, "key": "reward/final", "value": 0.5}]},
            format="json",
        ),
        # Refusals: a run token off its route, a stranger, a viewer writing, tokens one character off.
        run_job.get(hook),
        run_job.post(f"{API}runs/{world.f_run.pk}/metrics/", {"points": []}, format="json"),
        outsider.get(hook),
        outsider.get(f"{hook}deliveries/"),
        viewer.get(hook),
        viewer.patch(hook, {"url": HOOK + "x"}, format="json"),
        _client(secrets.api_token[:-1] + "A").get(API + "projects/"),
        _client(secrets.run_token + "x").post(f"{API}runs/{world.run.pk}/metrics/", {}, format="json"),
        # Bad input that carries the secrets: the body is refused, never repeated.
        owner.post(API + "tokens/", {"name": secrets.run_token * 10}, format="json"),
        owner.post(
            API + "notification-channels/",
            {"project": world.project.pk, "name": "again", "kind": "webhook", "url": HOOK},
            format="json",
        ),
        owner.post(
            API + "projects/", data=b'{"name": "' + ADMIN_PASSWORD.encode(), content_type="application/json"
        ),
        # Missing things, in the API and in pages.
        owner.get(f"{API}notification-channels/987654/"),
        Client().get("/no/such/page/"),
    ]
    # A test delivery to the hook fails (nothing listens on port 9): its error is logged and recorded.
    delivery = channel_send_test(channel=secrets.hook, user=world.owner)
    with pytest.raises(DeliveryError):
        delivery_send(delivery_id=delivery.pk)
    answers.append(viewer.get(f"{hook}deliveries/"))
    # Logging in: a wrong password, the admin's password under another name, then the right one.
    browser = Client()
    answers.append(browser.post("/login/", {"username": "root", "password": ADMIN_PASSWORD[:-1]}))
    answers.append(browser.post("/login/", {"username": "olivia", "password": ADMIN_PASSWORD}))
    answers.append(browser.post("/admin/login/", {"username": "root", "password": ADMIN_PASSWORD + "!"}))
    answers.append(browser.post("/login/", {"username": "root", "password": ADMIN_PASSWORD}))
    assert answers[-1].status_code == 302  # signed in
    return answers


def test_no_secret_reaches_the_logs(world, secrets, shh, client_for, every_log):
    _use_the_platform(world, secrets, client_for)
    logged = every_log.text + "".join(str(r.args) for r in every_log.records)
    assert every_log.records, "nothing was logged: the capture is not working"
    assert _leaks(logged, shh) == []


def test_no_error_answer_repeats_a_secret(world, secrets, shh, client_for):
    answers = _use_the_platform(world, secrets, client_for)
    errors = [a for a in answers if a.status_code >= 400]
    assert len(errors) >= 10
    refused_logins = answers[-4:-1]  # the login form again, with its error
    for answer in [*errors, *refused_logins]:
        assert _leaks(answer.content.decode(), shh) == [], (answer.status_code, answer.content[:300])


def test_the_api_shows_each_secret_only_to_whom_it_belongs(world, secrets, client_for):
    owner, viewer, member = client_for(world.owner), client_for(world.viewer), client_for(world.member)
    hook = f"{API}notification-channels/{secrets.hook.pk}/"
    everything = [secrets.api_token, secrets.run_token, secrets.hook_secret, ADMIN_PASSWORD]
    # Nobody reads a token's value or a channel's key again, not even the owner.
    for client in (owner, viewer, member):
        for route in (
            "tokens/",
            f"runs/{world.run.pk}/tokens/",
            "notification-channels/",
            f"notification-channels/{secrets.hook.pk}/",
            f"notification-channels/{secrets.hook.pk}/deliveries/",
            f"runs/{world.run.pk}/",
            "projects/",
        ):
            text = client.get(API + route).content.decode()
            assert _leaks(text, everything) == [], route
    # The webhook URL: whole to the project's editors, masked to its viewers.
    assert owner.get(hook).json()["url"] == HOOK
    assert member.get(hook).json()["url"] == HOOK
    for route in (hook, API + "notification-channels/", f"{hook}deliveries/"):
        assert _leaks(viewer.get(route).content.decode(), [HOOK, HOOK_KEY]) == [], route
    assert viewer.get(hook).json()["url"] == "http://127.0.0.1:9/…qrst"


def test_a_tokens_value_is_shown_once_to_its_maker(world, client_for):
    owner = client_for(world.owner)
    made = owner.post(API + "tokens/", {"name": "ci"}, format="json").json()
    raw = made["token"]
    assert raw.startswith("tri_")
    assert raw not in owner.get(API + "tokens/").content.decode()
    assert raw not in owner.get(API + f"tokens/{made['id']}/").content.decode()


def _boom(request):
    raise RuntimeError("the view failed")


def _fine(request):
    return HttpResponse("ok")


urlpatterns = [path("boom/", _boom), path("fine/", _fine)]
handler404 = "webui.views.not_found"
handler500 = "webui.views.server_error"


def test_a_server_error_logs_and_shows_no_credential_of_the_request(secrets, shh, settings, every_log):
    from django.test import Client

    settings.ROOT_URLCONF = __name__
    client = Client(raise_request_exception=False)
    client.cookies["sessionid"] = "s3ssion-" + HOOK_KEY
    response = client.post(
        "/boom/",
        {"password": ADMIN_PASSWORD, "token": secrets.run_token},
        headers={"Authorization": f"Bearer {secrets.api_token}"},
    )
    assert response.status_code == 500
    assert any(r.levelno >= logging.ERROR for r in every_log.records)  # the error was logged
    assert _leaks(response.content.decode(), [*shh, settings.SECRET_KEY]) == []
    assert _leaks(every_log.text, [*shh, settings.SECRET_KEY]) == []

"""Browser tests: a real daphne server (pages, API, websockets) and Debian's chromium via Playwright."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require_chromium() -> None:
    """Skip the test without Debian's chromium, or fail it when TRIUNE_REQUIRE_BROWSER says it must run."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("TRIUNE_REQUIRE_BROWSER"):
            pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium chromium-driver")
        pytest.skip(f"{CHROMIUM} is not installed")


@pytest.fixture(scope="module")
def browser():
    require_chromium()
    # Playwright's sync API keeps an event loop running in the test thread while the browser
    # lives; the test's own ORM calls stay synchronous in that thread, so Django's async-safety
    # guard does not apply. Both end with the module, so later (async) tests get a clean thread.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        yield from _launch()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _launch():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def storage_dir(settings, tmp_path) -> Path:
    """Dataset storage in a temporary directory, shared by the test process and its live server."""
    root = tmp_path / "storage"
    root.mkdir()
    settings.STORAGE_URL = root.as_uri()
    return root


@pytest.fixture
def server_env() -> dict[str, str]:
    """More environment for the live server; a test module that needs some overrides this fixture."""
    return {}


@pytest.fixture
def live_server_url(transactional_db, storage_dir, server_env):
    """daphne serving control.asgi against the test database and ``storage_dir``, on a free port."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    port = _free_port()
    env = dict(os.environ)
    host = db["HOST"] or "127.0.0.1"
    from urllib.parse import quote

    env["DATABASE_URL"] = f"postgres://{db['USER']}@{quote(host, safe='')}:{db['PORT'] or 5432}/{db['NAME']}"
    env["SESSION_COOKIE_SECURE"] = "0"
    env["CSRF_COOKIE_SECURE"] = "0"
    env["DEBUG"] = "0"
    env["STORAGE_URL"] = storage_dir.as_uri()
    env.update(server_env)
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "control.asgi:application"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    import urllib.request

    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                proc.kill()
                pytest.fail(f"daphne did not start:\n{out[-3000:]}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    yield page
    context.close()


def login(page, base_url: str, username: str, password: str) -> None:
    page.goto(base_url + "/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")

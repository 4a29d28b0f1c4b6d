"""Django's own checks: migrations match the models, and a production configuration passes --deploy."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

# The production environment of README.md: a long random key, DEBUG unset, HTTPS everywhere.
PRODUCTION = {
    "SECRET_KEY": secrets.token_urlsafe(50),
    "SECURE_SSL_REDIRECT": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "ALLOWED_HOSTS": "triune.example.com",
}
# HSTS for subdomains and the browsers' preload list bind every subdomain to HTTPS for a year, so they
# are opt-in; a deployment that sets them passes --deploy without a warning.
HSTS_OPT_IN = {"SECURE_HSTS_INCLUDE_SUBDOMAINS": "1", "SECURE_HSTS_PRELOAD": "1"}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("DEBUG", "TRIUNE_TESTING", "SECRET_KEY")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_models_and_migrations_agree():
    result = _manage("makemigrations", "--check", "--dry-run", env={"TRIUNE_TESTING": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "No changes detected"


def test_check_deploy_passes_in_production():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env={**PRODUCTION, **HSTS_OPT_IN})
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "System check identified no issues (0 silenced)."


def test_check_deploy_without_the_hsts_opt_ins_warns_only_about_them():
    result = _manage("check", "--deploy", env=PRODUCTION)
    assert result.returncode == 0, result.stderr
    issues = sorted(
        line.split(")")[0].split("(")[1] for line in result.stderr.splitlines() if line.startswith("?: (")
    )
    assert issues == ["security.W005", "security.W021"], result.stderr


@pytest.mark.parametrize(
    ("env", "issue"),
    [
        ({"DEBUG": "1"}, "security.W018"),
        ({"SECURE_SSL_REDIRECT": "0"}, "security.W008"),
        ({"SECURE_HSTS_SECONDS": "0"}, "security.W004"),
        ({"SESSION_COOKIE_SECURE": "0"}, "security.W012"),
        ({"CSRF_COOKIE_SECURE": "0"}, "security.W016"),
        ({"SECRET_KEY": "short"}, "security.W009"),
    ],
)
def test_check_deploy_catches_an_unsafe_setting(env, issue):
    # The check is not vacuous: each unsafe setting is reported.
    result = _manage("check", "--deploy", env={**PRODUCTION, **HSTS_OPT_IN, **env})
    assert issue in result.stderr, result.stdout + result.stderr


def test_production_refuses_to_start_without_a_secret_key():
    result = _manage("check", env={})
    assert result.returncode != 0
    assert "SECRET_KEY is not set: export SECRET_KEY=<a long random string>" in result.stderr

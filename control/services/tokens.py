from __future__ import annotations

import base64
import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.crypto import salted_hmac

from control.models import ApiToken, Run
from control.models.tokens import TOKEN_PREFIX_LENGTH, hash_token

RAW_TOKEN_PREFIX = "tri_"
# What an unknown, revoked or expired token is told: nothing about whether it ever existed.
TOKEN_REFUSED = "invalid, expired or revoked token"


class TokenRefused(Exception):
    """Why a bearer token does not authenticate; ``message`` is safe to show to whoever sent it."""

    def __init__(self, message: str = TOKEN_REFUSED) -> None:
        super().__init__(message)
        self.message = message


def api_token_create(
    *,
    user: AbstractBaseUser,
    name: str,
    run: Run | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiToken, str]:
    """Create a token and return it with its raw value, which is never stored and shown only once."""
    raw = RAW_TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        run=run,
        name=name,
        prefix=raw[len(RAW_TOKEN_PREFIX) : len(RAW_TOKEN_PREFIX) + TOKEN_PREFIX_LENGTH],
        digest=hash_token(raw),
        expires_at=expires_at,
    )
    return token, raw


def run_attempt_token(*, run: Run) -> tuple[ApiToken, str]:
    """The run-scoped token of the run's current attempt, the same raw value on every call.

    The raw value is derived from SECRET_KEY, the run and its attempt, so a submission that is
    tried again (its worker killed after Ray accepted the job, before the token row was
    committed) makes the very token the job already holds, instead of one the job never sees.
    """
    material = f"{run.pk}:{run.created_at.isoformat()}:{run.attempt}"
    digest = salted_hmac("triune.run-attempt-token", material, algorithm="sha256").digest()
    raw = RAW_TOKEN_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    existing = ApiToken.objects.filter(digest=hash_token(raw)).first()
    if existing is not None:
        return existing, raw
    token = ApiToken.objects.create(
        user=run.created_by,
        run=run,
        name=f"run {run.pk} attempt {run.attempt}",
        prefix=raw[len(RAW_TOKEN_PREFIX) : len(RAW_TOKEN_PREFIX) + TOKEN_PREFIX_LENGTH],
        digest=hash_token(raw),
    )
    return token, raw


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def run_tokens_revoke(*, run: Run) -> int:
    """Revoke every live token of ``run`` (its attempt ended); returns how many."""
    return ApiToken.objects.filter(run=run, revoked_at__isnull=True).update(revoked_at=timezone.now())


def api_token_check(*, raw: str) -> ApiToken:
    """The live token matching ``raw``; raises :class:`TokenRefused` saying why there is none.

    A run-scoped token lives as long as its run's attempt: once the run has ended (succeeded,
    failed, cancelled, lost) it is refused, even if nobody revoked it (tokens made before runs
    revoked theirs on ending). Its holder is told that, since it held the run's secret; an unknown
    token, or a personal one that was revoked or expired, gets the same message whatever the reason.
    """
    if not raw.startswith(RAW_TOKEN_PREFIX) or len(raw) > 200:
        raise TokenRefused
    token = ApiToken.objects.select_related("user", "run").filter(digest=hash_token(raw)).first()
    now = timezone.now()
    if token is None or not token.user.is_active:
        raise TokenRefused
    if token.run is not None and token.run.is_terminal:
        raise TokenRefused(
            f"run {token.run_id} has ended ({token.run.status}): its run-scoped tokens no longer work"
        )
    if token.run is not None and token.revoked_at is not None:
        raise TokenRefused(f"this run-scoped token of run {token.run_id} was revoked")
    if token.revoked_at is not None:
        raise TokenRefused
    if token.expires_at is not None and token.expires_at <= now:
        raise TokenRefused
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token matching ``raw``, or None (unknown, revoked or expired, or its run ended)."""
    try:
        return api_token_check(raw=raw)
    except TokenRefused:
        return None


def api_tokens_purge_expired(*, now: datetime | None = None) -> int:
    """Delete tokens that expired or were revoked more than a day ago; returns how many."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(days=1)
    deleted, _ = ApiToken.objects.filter(expires_at__lt=cutoff).delete()
    revoked, _ = ApiToken.objects.filter(revoked_at__lt=cutoff).delete()
    return deleted + revoked

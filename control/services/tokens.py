from __future__ import annotations

import secrets
from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from control.models import ApiToken, Run
from control.models.tokens import TOKEN_PREFIX_LENGTH, hash_token

RAW_TOKEN_PREFIX = "tri_"


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


def api_token_revoke(*, token: ApiToken) -> ApiToken:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    return token


def api_token_authenticate(*, raw: str) -> ApiToken | None:
    """The live token matching ``raw``, or None (unknown, revoked or expired)."""
    if not raw.startswith(RAW_TOKEN_PREFIX) or len(raw) > 200:
        return None
    token = ApiToken.objects.select_related("user", "run").filter(digest=hash_token(raw)).first()
    now = timezone.now()
    if token is None or token.revoked_at is not None or not token.user.is_active:
        return None
    if token.expires_at is not None and token.expires_at <= now:
        return None
    if token.last_used_at is None or (now - token.last_used_at).total_seconds() > 60:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token


def api_tokens_purge_expired(*, now: datetime | None = None) -> int:
    """Delete tokens that expired or were revoked more than a day ago; returns how many."""
    now = now or timezone.now()
    cutoff = now - timezone.timedelta(days=1)
    deleted, _ = ApiToken.objects.filter(expires_at__lt=cutoff).delete()
    revoked, _ = ApiToken.objects.filter(revoked_at__lt=cutoff).delete()
    return deleted + revoked

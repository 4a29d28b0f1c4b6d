"""Reads of API tokens: a user's personal tokens (never the run-scoped ones jobs hold)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import ApiToken


def personal_tokens(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """``user``'s own tokens, newest first."""
    return ApiToken.objects.filter(user=user, run__isnull=True).order_by("-created_at", "-id")


def personal_token_get(*, user: AbstractBaseUser, token_id: int) -> ApiToken | None:
    return personal_tokens(user=user).filter(pk=token_id).first()

"""Reads of API tokens: a user's personal tokens, and apart from them the run-scoped ones jobs hold."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import QuerySet

from control.models import ApiToken, Run


def personal_tokens(*, user: AbstractBaseUser) -> QuerySet[ApiToken]:
    """``user``'s own tokens, newest first."""
    return ApiToken.objects.filter(user=user, run__isnull=True).order_by("-created_at", "-id")


def personal_token_get(*, user: AbstractBaseUser, token_id: int) -> ApiToken | None:
    return personal_tokens(user=user).filter(pk=token_id).first()


def run_tokens(*, run: Run) -> QuerySet[ApiToken]:
    """The tokens of ``run``'s jobs (one per attempt submitted), newest first."""
    return ApiToken.objects.filter(run=run).select_related("run").order_by("-created_at", "-id")


def run_token_get(*, run: Run, token_id: int) -> ApiToken | None:
    return run_tokens(run=run).filter(pk=token_id).first()

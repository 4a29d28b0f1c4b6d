"""API tokens: created once, stored hashed, refused when revoked or expired, purged later."""

from __future__ import annotations

from datetime import timedelta

import pytest

pytestmark = pytest.mark.django_db


def test_the_raw_token_is_never_stored(user):
    from control.models import ApiToken
    from control.models.tokens import hash_token
    from control.services.tokens import api_token_create

    token, raw = api_token_create(user=user, name="laptop")
    assert raw.startswith("tri_") and len(raw) == 4 + 43
    stored = ApiToken.objects.get(pk=token.pk)
    assert stored.digest == hash_token(raw) != raw
    assert stored.prefix == raw[4:12]
    assert raw not in str(ApiToken.objects.filter(pk=token.pk).values().get())


@pytest.mark.parametrize(
    "case", ["unknown", "revoked", "expired", "inactive", "no_prefix", "too_long", "empty"]
)
def test_authenticate_refuses(case, user):
    from django.utils import timezone

    from control.services.tokens import api_token_authenticate, api_token_create, api_token_revoke

    token, raw = api_token_create(user=user, name=case)
    if case == "unknown":
        raw = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    elif case == "revoked":
        api_token_revoke(token=token)
    elif case == "expired":
        token.expires_at = timezone.now() - timedelta(microseconds=1)
        token.save()
    elif case == "inactive":
        user.is_active = False
        user.save()
    elif case == "no_prefix":
        raw = raw[4:]
    elif case == "too_long":
        raw = raw + "A" * 200
    elif case == "empty":
        raw = ""
    assert api_token_authenticate(raw=raw) is None


def test_authenticate_accepts_a_live_token_and_records_its_use(user):
    from django.utils import timezone

    from control.models import ApiToken
    from control.services.tokens import api_token_authenticate, api_token_create

    token, raw = api_token_create(user=user, name="ci", expires_at=timezone.now() + timedelta(hours=1))
    assert api_token_authenticate(raw=raw).pk == token.pk
    first_use = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first_use is not None
    # Within a minute the timestamp is not rewritten (one write a minute at most per token).
    api_token_authenticate(raw=raw)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first_use
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first_use - timedelta(seconds=61))
    api_token_authenticate(raw=raw)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first_use - timedelta(seconds=61)


def test_revoking_twice_keeps_the_first_time(user):
    from control.services.tokens import api_token_create, api_token_revoke

    token, _ = api_token_create(user=user, name="x")
    first = api_token_revoke(token=token).revoked_at
    assert api_token_revoke(token=token).revoked_at == first


def test_purge_deletes_only_what_ended_more_than_a_day_ago(user):
    from django.utils import timezone

    from control.models import ApiToken
    from control.services.tokens import api_token_create, api_tokens_purge_expired

    now = timezone.now()
    names = {
        "live": {},
        "expires later": {"expires_at": now + timedelta(days=3)},
        "expired an hour ago": {"expires_at": now - timedelta(hours=1)},
        "expired two days ago": {"expires_at": now - timedelta(days=2)},
        "revoked an hour ago": {"revoked_at": now - timedelta(hours=1)},
        "revoked two days ago": {"revoked_at": now - timedelta(days=2)},
    }
    for name, fields in names.items():
        token, _ = api_token_create(user=user, name=name)
        ApiToken.objects.filter(pk=token.pk).update(**fields)
    assert api_tokens_purge_expired(now=now) == 2
    assert sorted(ApiToken.objects.values_list("name", flat=True)) == [
        "expired an hour ago",
        "expires later",
        "live",
        "revoked an hour ago",
    ]

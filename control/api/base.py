from __future__ import annotations

from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from control.api.pagination import PagePagination
from control.models import ApiToken


class StrictSerializer(serializers.Serializer):
    """A serializer that refuses unknown fields instead of silently ignoring them."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise ValidationError(
                {"non_field_errors": [f"expected a JSON object, got {type(data).__name__}"]}
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            allowed = ", ".join(sorted(name for name, f in self.fields.items() if not f.read_only))
            raise ValidationError(
                {name[:100]: [f"unknown field; allowed fields are: {allowed}"] for name in unknown[:20]}
            )
        return super().to_internal_value(data)


class ProjectApi(APIView):
    """Base of every endpoint: run-scoped tokens are refused unless the view allows them."""

    allow_run_token = False
    # Lists answer a page of the one pagination (``paginated``): named so that the schema shows the page
    # object and its page and page_size parameters. A view whose list is not paged sets None.
    pagination_class = PagePagination

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if isinstance(request.auth, ApiToken) and request.auth.is_run_scoped and not self.allow_run_token:
            raise PermissionDenied("a run-scoped token may only write metrics of its own run")
        # PostgreSQL text cannot hold NUL: a filter holding one would fail in the database.
        for name, values in request.query_params.lists():
            if any("\x00" in value for value in values):
                raise ValidationError({name[:100]: ["must not contain NUL characters"]})


def query_int(request, name: str) -> int | None:
    """An optional integer query parameter; a malformed one is a 400 that names it."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise ValidationError({name: [f"must be an integer, got {raw[:50]!r}"]}) from exc
    if not -(2**31) <= value < 2**31:
        raise ValidationError({name: ["out of range"]})
    return value


def query_choice(request, name: str, choices) -> str | None:
    """An optional query parameter that must be one of ``choices``; anything else is a 400 naming it."""
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return None
    allowed = list(choices)
    if raw not in allowed:
        raise ValidationError({name: [f"must be one of {', '.join(allowed)}, got {raw[:50]!r}"]})
    return raw


def paginated(view: APIView, queryset, serializer_class):
    paginator = api_settings.DEFAULT_PAGINATION_CLASS()
    page = paginator.paginate_queryset(queryset, view.request, view=view)
    return paginator.get_paginated_response(serializer_class(page, many=True).data)

"""The OpenAPI schema: drf-spectacular's, saying what the API does where it would not.

Every operation documents its error responses (the one error shape), a strict input serializer
documents that it refuses unknown fields, and a nested list documents its bounds: so that a client
generated from the schema, and a fuzzer, send what the API accepts.
"""

from __future__ import annotations

from drf_spectacular import openapi
from drf_spectacular.utils import Direction
from rest_framework import serializers

from control.api.base import StrictSerializer


class ErrorOutput(serializers.Serializer):
    """The one error shape of the API (control/api/exceptions.py)."""

    message = serializers.CharField(help_text="what went wrong, and what to change")
    code = serializers.CharField(
        help_text="invalid, parse_error, not_authenticated, permission_denied, not_found, conflict, "
        "too_large, too_many_files, unavailable, insufficient_storage, ..."
    )
    extra = serializers.DictField(
        help_text='{"fields": {field: [messages]}} for invalid input, {"limit": bytes} for too_large, '
        '{"retry_after": seconds} for unavailable; else empty'
    )


# Any operation: a malformed query (400), no or a bad token (401), a run-scoped token or a viewer
# writing (403), an object that does not exist or is not the caller's (404), the database away
# (503, with Retry-After).
ERRORS = (400, 401, 403, 404, 503)
# An operation that changes something may find the object in a state that forbids it.
WRITE_ERRORS = (409,)
# An operation with a request body: larger than a request may hold, of a type no parser reads, or
# more than the storage has room for (507).
BODY_ERRORS = (413, 415, 507)


class AutoSchema(openapi.AutoSchema):
    def _map_basic_serializer(self, serializer, direction: Direction) -> dict:
        schema = super()._map_basic_serializer(serializer, direction)
        if isinstance(serializer, StrictSerializer) or (
            isinstance(serializer, type) and issubclass(serializer, StrictSerializer)
        ):
            schema["additionalProperties"] = False
            if schema.get("description") == StrictSerializer.__doc__:  # inherited, says nothing of this one
                del schema["description"]
        return schema

    def _map_serializer_field(self, field, direction: Direction, bypass_extensions: bool = False) -> dict:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        # A nested ``many=True`` serializer's bounds, which drf-spectacular leaves out.
        if isinstance(field, serializers.ListSerializer) and schema and schema.get("type") == "array":
            min_items = max(field.min_length or 0, 0 if field.allow_empty else 1)
            if min_items:
                schema["minItems"] = min_items
            if field.max_length is not None:
                schema["maxItems"] = field.max_length
        return schema

    def _get_response_bodies(self, direction: Direction = "response") -> dict:
        responses = super()._get_response_bodies(direction)
        statuses = list(ERRORS)
        if self.method in ("POST", "PUT", "PATCH", "DELETE"):
            statuses += WRITE_ERRORS
        if self.method in ("POST", "PUT", "PATCH"):
            statuses += BODY_ERRORS
        for status in statuses:
            if str(status) not in responses:
                responses[str(status)] = self._get_response_for_code(
                    ErrorOutput, str(status), direction=direction
                )
        return responses

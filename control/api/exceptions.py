"""One error shape for the whole API: ``{"message", "code", "extra": {"fields": ...}}``."""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from control.errors import (
    DATABASE_RETRY_AFTER_S,
    STORAGE_FULL_MESSAGE,
    DomainError,
    StorageFull,
    database_unavailable,
    database_unavailable_body,
    storage_full,
)

logger = logging.getLogger(__name__)


def _flatten(detail) -> list[str]:
    if isinstance(detail, dict):
        # "non_field_errors: " names no field: the message reads better without it.
        return [
            m if k == api_settings.NON_FIELD_ERRORS_KEY else f"{k}: {m}"
            for k, v in detail.items()
            for m in _flatten(v)
        ]
    if isinstance(detail, list):
        return [m for item in detail for m in _flatten(item)]
    return [str(detail)]


def _fields(detail) -> dict:
    if isinstance(detail, dict):
        return {k: _flatten(v) if not isinstance(v, dict) else _fields(v) for k, v in detail.items()}
    return {"non_field_errors": _flatten(detail)}


def exception_handler(exc, context):
    if isinstance(exc, RequestDataTooBig):  # Django's answer would be its HTML 400 page
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        message = (
            f"the request body is larger than the {limit} bytes a request may hold; send large files "
            "through /api/v1/uploads/ in chunks"
        )
        return Response({"message": message, "code": "too_large", "extra": {"limit": limit}}, status=413)
    if isinstance(exc, TooManyFilesSent | TooManyFieldsSent):  # Django's answer would be its HTML 400 page
        if isinstance(exc, TooManyFilesSent):
            limit, what = settings.DATA_UPLOAD_MAX_NUMBER_FILES, "files"
            hint = "; send more files through /api/v1/uploads/ in chunks"
        else:
            limit, what, hint = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS, "fields", ""
        message = f"the request holds more than the {limit} {what} a request may hold{hint}"
        return Response(
            {"message": message, "code": f"too_many_{what}", "extra": {"limit": limit}}, status=400
        )
    if storage_full(exc):
        logger.error("storage full: %s", exc)
        exc = StorageFull(STORAGE_FULL_MESSAGE)
    if database_unavailable(exc):
        logger.warning("database unavailable: %s", exc)
        return database_unavailable_response()
    if isinstance(exc, DomainError):
        extra = {"fields": exc.fields} if exc.fields else {}
        return Response({"message": exc.message, "code": exc.code, "extra": extra}, status=exc.status)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "not found")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        messages = _flatten(exc.detail)
        body = {
            "message": "; ".join(messages[:5]) if messages else "invalid input",
            "code": "invalid",
            "extra": {"fields": _fields(exc.detail)},
        }
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
        body = {
            "message": " ".join(_flatten(detail)),
            "code": code if isinstance(code, str) else "error",
            "extra": {},
        }
    if response.status_code == status.HTTP_401_UNAUTHORIZED and "WWW-Authenticate" not in response:
        response["WWW-Authenticate"] = "Bearer"
    response.data = body
    return response


def database_unavailable_response() -> Response:
    return Response(
        database_unavailable_body(), status=503, headers={"Retry-After": str(DATABASE_RETRY_AFTER_S)}
    )

"""Domain errors raised by services; the API turns them into 4xx responses."""

from __future__ import annotations

import errno


class DomainError(Exception):
    """A request that cannot be carried out; ``message`` says what to change."""

    code = "invalid"
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Forbidden(DomainError):
    code = "permission_denied"
    status = 403


class Conflict(DomainError):
    code = "conflict"
    status = 409


# Seconds a client is asked to wait (Retry-After) when the database cannot be reached.
DATABASE_RETRY_AFTER_S = 5
DATABASE_UNAVAILABLE_MESSAGE = (
    "the database is unavailable (restarting or unreachable); retry in a few seconds"
)


def database_unavailable(exc: BaseException | None) -> bool:
    """True for the errors of a database that cannot be reached or dropped the connection.

    They heal by themselves (a restart, a failover), so they are answered 503 with Retry-After,
    which clients such as the trainer's metrics sink retry, rather than 500.
    """
    from django.db import InterfaceError, OperationalError

    return isinstance(exc, OperationalError | InterfaceError)


def database_unavailable_body() -> dict:
    """The API's error shape for a database that cannot be reached (answered with status 503)."""
    return {
        "message": DATABASE_UNAVAILABLE_MESSAGE,
        "code": "unavailable",
        "extra": {"retry_after": DATABASE_RETRY_AFTER_S},
    }


class StorageFull(DomainError):
    """A write failed for want of room: a full disk, a quota or a file-size limit."""

    code = "insufficient_storage"
    status = 507


def storage_full(exc: BaseException | None) -> bool:
    """True for an OSError of a full disk (ENOSPC), a quota (EDQUOT) or a file-size limit (EFBIG)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


STORAGE_FULL_MESSAGE = (
    "the server ran out of storage space while writing your data; nothing of this request was kept. "
    "Ask the administrator to free space, then send it again"
)

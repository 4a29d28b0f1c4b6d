"""Assertions shared by the control-plane API tests."""

from __future__ import annotations

from dataclasses import dataclass, field

ERROR_KEYS = {"message", "code", "extra"}


def assert_error(response, status: int, *, code: str | None = None, message: str | None = None) -> dict:
    """The response is an error of the one API shape, with ``status`` (and ``code``, ``message`` if given)."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == ERROR_KEYS, body
    assert isinstance(body["message"], str) and body["message"].strip(), body
    assert isinstance(body["extra"], dict), body
    if code is not None:
        assert body["code"] == code, body
    if message is not None:
        assert body["message"] == message, body
    return body


def field_errors(response) -> dict:
    """The per-field messages of a 400."""
    body = assert_error(response, 400, code="invalid")
    return body["extra"].get("fields", {})


@dataclass(frozen=True)
class Raw:
    """A body sent as is, with its content type and extra headers."""

    data: bytes
    content_type: str = "application/octet-stream"
    headers: dict[str, str] = field(default_factory=dict)


def send(client, method: str, path: str, body=None):
    """Call ``path`` with a JSON body, a ``Raw`` body, or none."""
    call = getattr(client, method)
    if body is None:
        return call(path)
    if isinstance(body, Raw):
        return call(path, data=body.data, content_type=body.content_type, headers=body.headers)
    return call(path, body, format="json")


def send_raw(client, method: str, path: str, raw: str | bytes, content_type: str = "application/json"):
    """Call ``path`` with a raw body, to send what a JSON encoder would not produce."""
    return getattr(client, method)(path, data=raw, content_type=content_type)

"""Requests to a stack's API as an outside client makes them (urllib; no Django in between)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path


def call(stack, method: str, path: str, token: str, body: bytes | None = None, headers: dict | None = None):
    """``(status, decoded JSON body)`` of one request with a bearer token; errors are answers too."""
    request = urllib.request.Request(
        stack.url + path,
        data=body,
        method=method,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def call_json(stack, method: str, path: str, token: str, body: dict):
    return call(stack, method, path, token, json.dumps(body).encode(), {"Content-Type": "application/json"})


def multipart(fields: dict, files: list[Path]) -> tuple[bytes, str]:
    """A multipart/form-data body of ``fields`` and ``files`` (as repeated ``files`` parts)."""
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        )
    for path in files:
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        )
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"

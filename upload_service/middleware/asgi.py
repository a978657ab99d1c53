"""Small ASGI helpers shared by the middleware: add a header on the way out, send an error."""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.types import Message, Scope, Send

from upload_service.context import request_id_var
from upload_service.errors import UploadServiceError, error_body


def incoming_header(scope: Scope, name: bytes) -> bytes | None:
    """The raw value of a request header (names are lower-case in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def send_with_header(send: Send, name: bytes, value: Callable[[], bytes]) -> Send:
    """Wrap `send` so the response start carries `name: value()`, computed when it is sent."""

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            headers.append((name, value()))
            message["headers"] = headers
        await send(message)

    return wrapped


async def send_error(send: Send, exc: UploadServiceError) -> None:
    """Answer with the contract's envelope for `exc`, from below the routing layer."""
    body = json.dumps(
        error_body(exc.error_code, exc.message, request_id_var.get(), exc.details)
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers.extend((k.lower().encode(), v.encode()) for k, v in exc.headers.items())
    await send({"type": "http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})

"""Small ASGI helpers shared by the middleware: add a header on the way out, send an error."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable

from starlette.types import Message, Scope, Send

from upload_service.errors import UploadServiceError, error_body
from upload_service.observability.context import request_id_var


def incoming_header(scope: Scope, name: bytes) -> bytes | None:
    """The raw value of a request header (names are lower-case in ASGI)."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


# Headers that layers ask to put on the response, kept in the request's state. They are applied
# by the one `send` wrapper the outermost layer installs: each further layer that only adds a
# header then costs nothing per message instead of a wrapper of its own.
STAMPS_KEY = "response_stamps"
Stamp = Callable[[], Iterable[tuple[bytes, bytes]]]


def stamp_response(scope: Scope, stamp: Stamp) -> None:
    """Ask for headers on this request's response; `stamp` runs when the response starts."""
    scope["state"].setdefault(STAMPS_KEY, []).append(stamp)


def stamping_send(scope: Scope, send: Send) -> Send:
    """Wrap `send` once so the response start carries every stamped header."""
    state = scope["state"]

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            stamps = state.get(STAMPS_KEY)
            if stamps:
                headers = list(message.get("headers", ()))
                for stamp in stamps:
                    headers.extend(stamp())
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

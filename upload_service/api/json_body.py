"""Routes whose body FastAPI parses: the body is bounded by `MAX_JSON_BODY_KB` and read after auth.

FastAPI reads such a body whole before it solves the route's dependencies. Early auth has
verified the caller by then (no body is read for a stranger); this route class bounds the read
itself: a `Content-Length` over the limit is refused with 413 before a byte is read, and a
chunked body is cut off with 413 as soon as it passes the limit. Routes FastAPI reads no body
for (the streaming upload, every read) are left exactly as they are, at no cost.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from upload_service.config import Settings
from upload_service.errors import ClientDisconnected, PayloadTooLarge

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class JsonBodyRoute(APIRoute):
    """An `APIRoute` that reads its parsed body itself, bounded, before FastAPI parses it."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        if self.body_field is None:
            return handler

        async def bounded(request: Request) -> Response:
            settings: Settings = request.app.state.resources.settings
            body = await read_bounded(request, settings.max_json_body_bytes)
            # FastAPI then reads the body we hold, as if from the client.
            return await handler(Request(request.scope, _replaying(body, request.receive)))

        return bounded


async def read_bounded(request: Request, max_bytes: int) -> bytes:
    """The whole body, or `PayloadTooLarge` once it is known to exceed `max_bytes`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(max_bytes)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_bytes:
                raise PayloadTooLarge(max_bytes)
    except ClientDisconnect:
        raise ClientDisconnected() from None
    return bytes(body)


def _replaying(body: bytes, receive: Receive) -> Receive:
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        if pending:
            return pending.pop()
        return await receive()  # After the body: a disconnect, for whoever listens.

    return replay

"""Request id: keep a well-formed `X-Request-ID`, else mint one; echo it on the response."""

from __future__ import annotations

import os
import re

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.middleware.asgi import incoming_header, stamp_response, stamping_send
from upload_service.observability.context import request_id_var

_VALID = re.compile(rb"^[A-Za-z0-9._-]{1,128}$")


def _new_id() -> str:
    # 128 random bits: a tenth of a ULID's cost, and nothing reads order into request ids.
    return os.urandom(16).hex()


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = incoming_header(scope, b"x-request-id")
        request_id = raw.decode() if raw is not None and _VALID.match(raw) else _new_id()
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)
        header = ((b"x-request-id", request_id.encode()),)
        stamp_response(scope, lambda: header)
        try:
            # Outermost: the one send wrapper, which applies every layer's stamped headers.
            await self.app(scope, receive, stamping_send(scope, send))
        finally:
            request_id_var.reset(token)

"""Correlation id: incoming `X-Correlation-ID`, else the request id; kept in a contextvar.

The contextvar is what log lines, outbound HTTP calls and gRPC metadata read, and what a job
row records so the work it causes carries the same id.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.middleware.asgi import incoming_header, stamp_response
from upload_service.observability.context import correlation_id_var

_VALID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class CorrelationIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = incoming_header(scope, b"x-correlation-id")
        if raw is not None and _VALID.match(raw):
            correlation_id = raw.decode()
        else:
            correlation_id = scope["state"]["request_id"]
        token = correlation_id_var.set(correlation_id)
        header = ((b"x-correlation-id", correlation_id.encode()),)
        stamp_response(scope, lambda: header)
        try:
            await self.app(scope, receive, send)
        finally:
            correlation_id_var.reset(token)

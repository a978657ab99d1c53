"""Catch-all: turn an unhandled exception into the contract's generic 500 envelope.

Starlette answers unhandled exceptions from `ServerErrorMiddleware`, which sits outside every
user middleware, so its 500 would lack our headers. Catching here, inside the header-adding
layers, lets the 500 travel back out through them like any other response.
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service.errors import UploadServiceError
from upload_service.middleware.asgi import send_error

logger = logging.getLogger("upload_service.errors")


class CatchAllMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            logger.exception("unhandled error on %s %s", scope["method"], scope["path"])
            if started:
                raise  # Too late for a clean answer; the server closes the connection.
            await send_error(send, UploadServiceError())

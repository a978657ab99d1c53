"""Timing: `X-Process-Time` in milliseconds, measured up to the start of the response."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.middleware.asgi import stamp_response


class TimingMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        def elapsed() -> tuple[tuple[bytes, bytes]]:
            return (
                (b"x-process-time", f"{(time.perf_counter() - started) * 1000:.2f}ms".encode()),
            )

        stamp_response(scope, elapsed)
        await self.app(scope, receive, send)

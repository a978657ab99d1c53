"""Observation: the access line and the request metrics, from one measurement of each response.

It sits inside the request-id and correlation layers, so the line carries both ids, and outside
the catch-all, so an unhandled error is logged and counted as the 500 the client got.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service.middleware.access_log import AccessLog
from upload_service.middleware.metrics import RequestMetrics
from upload_service.middleware.route_template import route_template


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, slow_request_ms: float = 1000.0) -> None:
        self.app = app
        self.access_log = AccessLog(slow_request_ms)
        self.metrics = RequestMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # What the client sees if the app fails before it starts a response.

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            duration_s = time.perf_counter() - started
            route = route_template(scope)
            self.metrics.record(scope["method"], route, status, duration_s)
            self.access_log.record(scope, route, status, duration_s * 1000)

"""Request metrics: count and time every answered request by method, route template and status.

It sits beside the access log, outside the catch-all, so a 500 is counted as the client saw it.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service import metrics
from upload_service.middleware.route_template import route_template


class MetricsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # Resolving label values to a series costs a lock and a lookup; remember each series.
        self.series: dict[tuple[str, str, int], metrics.RequestSeries] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            method = scope["method"]
            # Any method a client invents shares one series, so the cache stays bounded.
            method = method if method in metrics.KNOWN_METHODS else "OTHER"
            key = (method, route_template(scope), status)
            series = self.series.get(key)
            if series is None:
                series = self.series[key] = metrics.request_series(*key)
            series.observe(time.perf_counter() - started)

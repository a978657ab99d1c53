"""Access log: one structured line per request, written once the response is complete.

It sits inside the request-id and correlation layers, so the line carries both ids, and outside
the catch-all, so an unhandled error is logged with the 500 the client got.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service.middleware.route_template import route_template

logger = logging.getLogger("upload_service.access")

# Where `get_current_user` leaves the caller's id for this line (the `sub` claim).
USER_ID_STATE_KEY = "user_id"
# Kubelet and Prometheus call these every few seconds; at INFO they would be most of the log.
QUIET_PATHS = frozenset({"/health", "/readiness", "/metrics"})


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp, slow_request_ms: float = 1000.0) -> None:
        self.app = app
        self.slow_request_ms = slow_request_ms

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
            self._log(scope, status, (time.perf_counter() - started) * 1000)

    def _log(self, scope: Scope, status: int, duration_ms: float) -> None:
        slow = duration_ms > self.slow_request_ms
        if slow:
            level = logging.WARNING
        elif scope["path"] in QUIET_PATHS and status < 400:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not logger.isEnabledFor(level):
            return
        route = route_template(scope)
        method = scope["method"]
        logger.log(
            level,
            "%s %s %d %.1fms%s",
            method,
            route,
            status,
            duration_ms,
            " (slow)" if slow else "",
            extra={
                "method": method,
                "route": route,
                "path": scope["path"],
                "status": status,
                "duration_ms": round(duration_ms, 2),
                "user_id": scope.get("state", {}).get(USER_ID_STATE_KEY),
                "slow": slow,
            },
        )

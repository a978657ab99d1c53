"""The access line: one structured line per request, written once the response is complete."""

from __future__ import annotations

import logging

from starlette.types import Scope

logger = logging.getLogger("upload_service.access")

# Where early auth leaves the caller's id for this line (the `sub` claim).
USER_ID_STATE_KEY = "user_id"
# Kubelet and Prometheus call these every few seconds; at INFO they would be most of the log.
QUIET_PATHS = frozenset({"/health", "/readiness", "/metrics"})
# Responses that last as long as their client wants (event streams): long is not slow.
LONG_LIVED_PATHS = frozenset({"/v1/events"})


class AccessLog:
    """Writes the access line; slow requests are warnings, quiet probes are DEBUG."""

    def __init__(self, slow_request_ms: float = 1000.0) -> None:
        self.slow_request_ms = slow_request_ms

    def record(self, scope: Scope, route: str, status: int, duration_ms: float) -> None:
        """Log one answered request."""
        slow = duration_ms > self.slow_request_ms and scope["path"] not in LONG_LIVED_PATHS
        if slow:
            level = logging.WARNING
        elif scope["path"] in QUIET_PATHS and status < 400:
            level = logging.DEBUG
        else:
            level = logging.INFO
        if not logger.isEnabledFor(level):
            return
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

"""The middleware stack, written once in execution order (outermost first)."""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES

from upload_service.config import Settings
from upload_service.middleware.catch_all import CatchAllMiddleware
from upload_service.middleware.compression import CompressionMiddleware
from upload_service.middleware.correlation import CorrelationIdMiddleware
from upload_service.middleware.cors import CorsMiddleware
from upload_service.middleware.early_auth import (
    DEV_TOKEN_REQUEST,
    PUBLIC_REQUESTS,
    EarlyAuthMiddleware,
)
from upload_service.middleware.observe import ObserveMiddleware
from upload_service.middleware.request_id import RequestIdMiddleware
from upload_service.middleware.timing import TimingMiddleware
from upload_service.middleware.tus import TusHeadersMiddleware, TusVersionMiddleware
from upload_service.middleware.unread_body import CloseOnUnreadBodyMiddleware

EXPOSED_HEADERS = [
    "X-Request-ID",
    "X-Correlation-ID",
    "X-Process-Time",
    "Retry-After",
    "Location",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "Idempotent-Replayed",
    "Content-Disposition",
    "ETag",
    # The tus protocol's answers (a browser's tus client reads them).
    "Upload-Offset",
    "Upload-Length",
    "Upload-Metadata",
    "Upload-Expires",
    "Tus-Resumable",
    "Tus-Version",
    "Tus-Extension",
    "Tus-Max-Size",
    "Tus-Checksum-Algorithm",
    "Document-Location",
]

# Stored documents are served as they are: never compress a download.
NEVER_COMPRESSED = (
    *DEFAULT_EXCLUDED_CONTENT_TYPES,
    "application/pdf",
    "application/octet-stream",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
)


def public_requests(settings: Settings) -> frozenset[tuple[str, str]]:
    """Requests that need no token: the development sign-in's only where that route exists."""
    if settings.dev_sign_in_enabled:
        return PUBLIC_REQUESTS | {DEV_TOKEN_REQUEST}
    return PUBLIC_REQUESTS


def middleware_stack(settings: Settings) -> list[Middleware]:
    """Outermost first: the order a request meets them on the way in.

    Request id comes first: it installs the one `send` wrapper that applies every header a layer
    or a dependency stamps (request id, process time, correlation id, rate-limit figures), so
    every response, errors included, carries them. An answer given before the body was read
    closes the connection (so the client stops sending it), whoever gave it. Timing and
    correlation follow; observation
    (the access line and the request metrics, from one measurement) comes next, so its lines
    carry both ids and it sees every answer, early 401 and 500 included; CORS wraps the
    catch-all and early auth, so a 401 or a 500 to an allowed origin carries CORS headers
    and a preflight needs no token; the tus headers layer comes next so its version header is
    on every tus answer, 401 and 500 included; the catch-all sits inside all of them so a 500
    still passes back through them; the tus version check (412) follows early auth, so a caller
    without a token learns nothing but 401; gzip is innermost and only ever sees JSON worth
    compressing.
    """
    return [
        Middleware(RequestIdMiddleware),
        Middleware(CloseOnUnreadBodyMiddleware),
        Middleware(TimingMiddleware),
        Middleware(CorrelationIdMiddleware),
        Middleware(ObserveMiddleware, slow_request_ms=settings.slow_request_ms),
        Middleware(
            CorsMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=["POST", "GET", "HEAD", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-ID",
                "X-Correlation-ID",
                "If-None-Match",
                "Range",
                # What tus clients send (tus-js-client, Uppy).
                "Upload-Length",
                "Upload-Offset",
                "Upload-Metadata",
                "Upload-Checksum",
                "Tus-Resumable",
                "Upload-Defer-Length",
                "Upload-Concat",
                "X-HTTP-Method-Override",
                "X-Requested-With",
            ],
            expose_headers=EXPOSED_HEADERS,
            max_age_s=600,
        ),
        Middleware(TusHeadersMiddleware),
        Middleware(CatchAllMiddleware),
        Middleware(EarlyAuthMiddleware, public_requests=public_requests(settings)),
        Middleware(TusVersionMiddleware),
        Middleware(
            CompressionMiddleware,
            minimum_size=1000,
            compresslevel=6,
            exclude_content_types=NEVER_COMPRESSED,
        ),
    ]

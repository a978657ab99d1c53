"""Compression: Starlette's gzip for clients that accept it, and no work at all for the others.

Starlette's `GZipMiddleware` wraps every response, even for a client that sent no
`Accept-Encoding: gzip`, re-parsing the response headers to decide to change nothing. Probes,
load balancers and most service-to-service callers are such clients, so they skip it here.
"""

from __future__ import annotations

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.middleware.asgi import incoming_header


class CompressionMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        minimum_size: int = 1000,
        compresslevel: int = 6,
        exclude_content_types: tuple[str, ...] = DEFAULT_EXCLUDED_CONTENT_TYPES,
    ) -> None:
        self.app = app
        self.gzip = GZipMiddleware(
            app,
            minimum_size=minimum_size,
            compresslevel=compresslevel,
            exclude_content_types=exclude_content_types,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The same test Starlette's middleware makes, so both paths agree on who accepts gzip.
        accepted = incoming_header(scope, b"accept-encoding") if scope["type"] == "http" else None
        if accepted is not None and b"gzip" in accepted:
            await self.gzip(scope, receive, send)
            return
        # An uncompressed answer needs no `Vary: Accept-Encoding`: any client can read it, and
        # every compressed answer still carries the header, so no cache serves gzip to these.
        await self.app(scope, receive, send)

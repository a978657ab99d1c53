"""Early auth: refuse a protected request that carries no Bearer token before reading its body.

A 50 MB upload without a token then costs the server one header parse. Verifying the token is
the `CurrentUser` dependency's job; this layer only checks that there is one to verify.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.errors import Unauthenticated
from upload_service.middleware.asgi import incoming_header, send_error

PUBLIC_PATHS = frozenset(
    {
        "/health",
        "/readiness",
        "/metrics",
        "/openapi.json",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
    }
)


class EarlyAuthMiddleware:
    def __init__(self, app: ASGIApp, public_paths: frozenset[str] = PUBLIC_PATHS) -> None:
        self.app = app
        self.public_paths = public_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public_paths:
            await self.app(scope, receive, send)
            return
        authorization = incoming_header(scope, b"authorization")
        if authorization is None or authorization[:7].lower() != b"bearer ":
            await send_error(send, Unauthenticated(token_sent=authorization is not None))
            return
        await self.app(scope, receive, send)

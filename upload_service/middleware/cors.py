"""CORS as the contract words it: allowed origins get the headers on every answer, others none.

Starlette's `CORSMiddleware` sends `Access-Control-Expose-Headers` to any origin and the allow
lists to refused preflights; the contract says other origins get no CORS headers at all, so this
small layer does exactly that. A request from an origin that is not allowed passes through as if
there were no CORS here (its preflight then meets early auth like any other tokenless request).
"""

from __future__ import annotations

from collections.abc import Collection

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from upload_service.middleware.asgi import incoming_header

# Headers a browser may always send; listed so a preflight asking for them is answered fully.
_SAFELISTED = ("Accept", "Accept-Language", "Content-Language", "Content-Type")


class CorsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        allow_origins: Collection[str],
        allow_methods: Collection[str],
        allow_headers: Collection[str],
        expose_headers: Collection[str],
        max_age_s: int = 600,
    ) -> None:
        self.app = app
        self.allow_any = "*" in allow_origins
        self.allow_origins = frozenset(o.encode() for o in allow_origins if o != "*")
        allowed_headers = sorted({*_SAFELISTED, *allow_headers}, key=str.lower)
        self.preflight_headers = [
            (b"access-control-allow-methods", ", ".join(allow_methods).encode()),
            (b"access-control-allow-headers", ", ".join(allowed_headers).encode()),
            (b"access-control-max-age", str(max_age_s).encode()),
            (b"content-length", b"0"),
        ]
        self.expose_headers = ", ".join(expose_headers).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = incoming_header(scope, b"origin") if scope["type"] == "http" else None
        if origin is None:
            await self.app(scope, receive, send)
            return
        # The answer depends on the Origin header, so shared caches must key on it.
        added = [(b"vary", b"Origin")]
        if self.allow_any or origin in self.allow_origins:
            added.append((b"access-control-allow-origin", origin))
            is_preflight = scope["method"] == "OPTIONS" and (
                incoming_header(scope, b"access-control-request-method") is not None
            )
            if is_preflight:
                # Answered here, before early auth: a browser never sends a token on a
                # preflight. It compares its request with the allow lists itself.
                headers = [*added, *self.preflight_headers]
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return
            added.append((b"access-control-expose-headers", self.expose_headers))

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *added]
            await send(message)

        await self.app(scope, receive, send_with_cors)

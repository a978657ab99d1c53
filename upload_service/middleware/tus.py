"""The tus protocol's edge: its version on every answer, its method override, its 412.

For paths under `/v1/uploads/tus` only. Every answer (an early 401, a 500, a 404 included)
carries `Tus-Resumable: 1.0.0`; a request other than OPTIONS without `Tus-Resumable: 1.0.0` is
refused with 412 and `Tus-Version` before anything else looks at it; and a POST carrying
`X-HTTP-Method-Override: PATCH|DELETE` (clients behind proxies that drop those methods) is
routed as that method. Sits outside early auth, so its 401s are stamped too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.errors import UnsupportedTusVersion
from upload_service.middleware.asgi import incoming_header, send_error, stamp_response

TUS_PREFIX = "/v1/uploads/tus"
_VERSION = b"1.0.0"
_OVERRIDES = {b"PATCH": "PATCH", b"DELETE": "DELETE"}
_RESUMABLE = [(b"tus-resumable", _VERSION)]


class TusProtocolMiddleware:
    def __init__(self, app: ASGIApp, prefix: str = TUS_PREFIX) -> None:
        self.app = app
        self.prefix = prefix
        self.prefix_slash = f"{prefix}/"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._is_tus(scope["path"]):
            await self.app(scope, receive, send)
            return
        stamp_response(scope, lambda: _RESUMABLE)
        if scope["method"] == "POST":
            override = incoming_header(scope, b"x-http-method-override")
            method = _OVERRIDES.get((override or b"").strip().upper())
            if method is not None:
                scope = {**scope, "method": method}
        if scope["method"] != "OPTIONS":
            version = incoming_header(scope, b"tus-resumable")
            if version is None or version.strip() != _VERSION:
                await send_error(send, UnsupportedTusVersion())
                return
        await self.app(scope, receive, send)

    def _is_tus(self, path: str) -> bool:
        return path == self.prefix or path.startswith(self.prefix_slash)

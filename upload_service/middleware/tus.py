"""The tus protocol's edge: its version on every answer, its method override, its 412.

For paths under `/v1/uploads/tus` only, in two layers of the stack:

- `TusHeadersMiddleware`, outside early auth: every answer (an early 401, a 500, a 404
  included) carries `Tus-Resumable: 1.0.0`, and a POST carrying `X-HTTP-Method-Override:
  PATCH|DELETE` (clients behind proxies that drop those methods) is routed as that method.
- `TusVersionMiddleware`, inside early auth: a tus request (creation, or HEAD, PATCH, DELETE of
  an upload; not OPTIONS, which asks what the server speaks) without `Tus-Resumable: 1.0.0` is
  refused with 412 and `Tus-Version`, before routing and before any of its body is read. After
  auth, so that a caller without a token learns nothing but 401; any other method meets
  routing's 405.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.errors import UnsupportedTusVersion
from upload_service.middleware.asgi import incoming_header, send_error, stamp_response

TUS_PREFIX = "/v1/uploads/tus"
_VERSION = b"1.0.0"
_OVERRIDES = {b"PATCH": "PATCH", b"DELETE": "DELETE"}
_RESUMABLE = [(b"tus-resumable", _VERSION)]
_UPLOAD_METHODS = frozenset({"HEAD", "PATCH", "DELETE"})


def is_tus(scope: Scope, prefix: str = TUS_PREFIX) -> bool:
    """Whether an HTTP request is for the tus endpoint or one of its uploads."""
    if scope["type"] != "http":
        return False
    path: str = scope["path"]
    return path == prefix or path.startswith(f"{prefix}/")


def _is_tus_operation(scope: Scope, prefix: str = TUS_PREFIX) -> bool:
    # A creation, or an upload's HEAD, PATCH or DELETE: what the version applies to.
    if scope["type"] != "http":
        return False
    path: str = scope["path"]
    if path == prefix:
        return bool(scope["method"] == "POST")
    return path.startswith(f"{prefix}/") and scope["method"] in _UPLOAD_METHODS


class TusHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_tus(scope):
            await self.app(scope, receive, send)
            return
        stamp_response(scope, lambda: _RESUMABLE)
        if scope["method"] == "POST":
            override = incoming_header(scope, b"x-http-method-override")
            method = _OVERRIDES.get((override or b"").strip().upper())
            if method is not None:
                scope = {**scope, "method": method}
        await self.app(scope, receive, send)


class TusVersionMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if _is_tus_operation(scope):
            version = incoming_header(scope, b"tus-resumable")
            if version is None or version.strip() != _VERSION:
                await send_error(send, UnsupportedTusVersion())
                return
        await self.app(scope, receive, send)

"""Early auth: verify a protected request's Bearer token before a byte of its body is read.

FastAPI reads and parses a JSON body before it solves a route's dependencies, so a check made in
the `CurrentUser` dependency would come after the body: a forged token with a 300 MB body once
cost a process a gigabyte before its 401. Here a tokenless or forged request costs one header
parse and one verification, whatever it sends after its headers. The verified caller is left in
the request's state for `get_current_user`, so a token is verified once per request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from upload_service.edge.auth import Principal, TokenVerifier
from upload_service.errors import Unauthenticated
from upload_service.middleware.access_log import USER_ID_STATE_KEY
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
        # The web page signs in inside the browser: the page itself is public.
        "/",
    }
)
# The page's scripts, styles and the API docs' vendored files.
PUBLIC_PREFIXES = ("/assets/",)
# Public for one method only: tus clients ask what the server speaks before they sign in.
PUBLIC_REQUESTS = frozenset({("OPTIONS", "/v1/uploads/tus")})
# The development sign-in mints a token for whoever asks: public, and only where it exists.
DEV_TOKEN_REQUEST = ("POST", "/v1/dev/token")
# Where the verified caller waits for `get_current_user`.
PRINCIPAL_STATE_KEY = "principal"


class EarlyAuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        public_paths: frozenset[str] = PUBLIC_PATHS,
        public_requests: frozenset[tuple[str, str]] = PUBLIC_REQUESTS,
        public_prefixes: tuple[str, ...] = PUBLIC_PREFIXES,
    ) -> None:
        self.app = app
        self.public_paths = public_paths
        self.public_requests = public_requests
        self.public_prefixes = public_prefixes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in self.public_paths
            or (scope["method"], scope["path"]) in self.public_requests
            or scope["path"].startswith(self.public_prefixes)
        ):
            await self.app(scope, receive, send)
            return
        authorization = incoming_header(scope, b"authorization")
        if authorization is None or authorization[:7].lower() != b"bearer ":
            await send_error(send, Unauthenticated(token_sent=authorization is not None))
            return
        # Built by the lifespan, which runs before any request is served.
        verifier: TokenVerifier | None = scope["app"].state.resources.verifier
        assert verifier is not None
        token = authorization[7:].decode("latin-1").strip()
        try:
            principal: Principal = await verifier.verify(token)
        except Unauthenticated as exc:
            await send_error(send, exc)
            return
        state = scope.setdefault("state", {})
        state[PRINCIPAL_STATE_KEY] = principal
        state[USER_ID_STATE_KEY] = principal.sub  # The access log line names the caller.
        await self.app(scope, receive, send)

"""Rate-limit headers: the figures the limit dependency recorded, added at response start.

The dependency runs inside the route, but the response may be an error built by an exception
handler or a `Response` the route returned itself; adding the headers here, on the way out,
puts them on every response of a limited route, success or error.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Where the limit dependency leaves a list of raw `(name, value)` header pairs.
RATE_LIMIT_STATE_KEY = "rate_limit_headers"


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                recorded = scope.get("state", {}).get(RATE_LIMIT_STATE_KEY)
                if recorded:
                    headers = list(message.get("headers", ()))
                    present = {name.lower() for name, _ in headers}
                    headers.extend(pair for pair in recorded if pair[0] not in present)
                    message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_limits)

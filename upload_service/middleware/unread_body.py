"""An answer given before the request's body was read closes the connection after it.

Left open, the connection would have uvicorn read and drop the rest of the body before the
next request: a tus client whose PATCH is refused at once (409, 423, 401, 412, …) would still
send its whole chunk, megabytes, for nothing. `Connection: close` makes the server hang up
after the answer, so the client stops sending and retries on a new connection. A request
whose body was read to its end keeps its connection.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = (b"connection", b"close")


def _declares_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"0", b"")
        if name == b"transfer-encoding":
            return True
    return False


class CloseOnUnreadBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _declares_body(scope):
            await self.app(scope, receive, send)
            return
        body_read = False

        async def reading() -> Message:
            nonlocal body_read
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read = True  # Its last chunk, or the client left: nothing more will come.
            return message

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start" and not body_read:
                message = {**message, "headers": [*message.get("headers", ()), CLOSE]}
            await send(message)

        await self.app(scope, reading, answering)

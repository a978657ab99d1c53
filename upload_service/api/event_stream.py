"""The response of `GET /v1/events`: Server-Sent Events, written as they come, never buffered.

A pure ASGI response rather than Starlette's `StreamingResponse`, for three things it needs:
the stream ends as soon as the process begins to shut down (or the client leaves), even while a
write waits on a client that stopped reading; such a write gives up after `SEND_TIMEOUT_S`, so a
stalled client cannot hold its stream (and its slot) for ever; and the stream's subscription is
released however it ends.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import suppress

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

SEND_TIMEOUT_S = 30.0
_FINISH_TIMEOUT_S = 1.0

EVENT_STREAM_HEADERS = {
    "Cache-Control": "no-cache",
    # Asks nginx-style proxies not to buffer the stream.
    "X-Accel-Buffering": "no",
}


class EventStreamResponse(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        frames: AsyncIterator[bytes],
        *,
        closing: asyncio.Event,
        release: Callable[[], Awaitable[None]],
    ) -> None:
        super().__init__(status_code=200, headers=EVENT_STREAM_HEADERS)
        # A stream has no length: the `content-length: 0` of an empty body would end it.
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._frames = frames
        self._closing = closing
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            pump = asyncio.ensure_future(self._pump(send))
            left = asyncio.ensure_future(_client_left(receive))
            closing = asyncio.ensure_future(self._closing.wait())
            watched = {pump, left, closing}
            try:
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in watched:
                    task.cancel()
                await asyncio.wait(watched)
            if not left.cancelled() and left.done() and left.exception() is None:
                return  # The client is gone: nothing more to write.
            if pump.done() and not pump.cancelled() and pump.exception() is not None:
                return  # A write timed out or failed: the connection is not worth finishing.
            with suppress(Exception):
                async with asyncio.timeout(_FINISH_TIMEOUT_S):
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            with suppress(Exception):
                await self._frames.aclose()  # type: ignore[attr-defined]
            await self._release()

    async def _pump(self, send: Send) -> None:
        async for chunk in self._frames:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})


async def _client_left(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return

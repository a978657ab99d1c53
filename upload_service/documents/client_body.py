"""The request body as it arrives, cut off when the client stops sending it.

A client that sends part of a body and then nothing would otherwise hold its connection, its
buffers and its share of the upload budget for as long as it likes. `ClientBody` notes when each
read from the client begins; one watchdog timer per request compares that moment with the clock
and, once a single read has waited `idle_timeout_s`, cancels the read, which surfaces as
`UploadTimeout` (408) so the upload aborts and gives back what it held. Time the server spends
on its own side (waiting for budget, for a part to finish sending) is never counted as the
client's silence: only a read in progress is. Per chunk this costs one clock read and two
stores; the timer is armed once and re-armed at most once per `idle_timeout_s`.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive

from upload_service.errors import ClientDisconnected, UploadTimeout


class ClientBody:
    """An async iterator of the body's chunks, read from the ASGI `receive` of one request."""

    def __init__(self, receive: Receive, idle_timeout_s: float) -> None:
        self._receive = receive
        self._idle_timeout_s = idle_timeout_s
        self._reading_since: float | None = None
        self._ended = False
        self._cut_off = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def __aiter__(self) -> ClientBody:
        return self

    async def __anext__(self) -> bytes:
        if self._ended:
            raise StopAsyncIteration
        loop = asyncio.get_running_loop()
        if self._timer is None:
            self._task = asyncio.current_task()
            self._timer = loop.call_later(self._idle_timeout_s, self._watch)
        self._reading_since = loop.time()
        try:
            message = await self._receive()
        except asyncio.CancelledError:
            task = self._task
            # Our own cancellation, and no other pending: the client timed out.
            if self._cut_off and task is not None and task.uncancel() == 0:
                raise UploadTimeout() from None
            raise
        self._reading_since = None
        if message["type"] == "http.disconnect":
            self._end()
            raise ClientDisconnected()
        if not message.get("more_body", False):
            self._end()
        body: bytes = message.get("body", b"")
        return body

    def _end(self) -> None:
        self._ended = True
        if self._timer is not None:
            self._timer.cancel()

    def _watch(self) -> None:
        # Runs on the loop while the request's task is suspended: if a read is in progress,
        # the task is waiting in `receive`, so the cancellation lands exactly there.
        task = self._task
        if self._ended or task is None or task.done():
            return  # The body is over, or the request ended without reading all of it.
        loop = asyncio.get_running_loop()
        now = loop.time()
        since = self._reading_since
        if since is not None and now - since >= self._idle_timeout_s:
            self._cut_off = True
            task.cancel()
            return
        self._timer = loop.call_at(
            (now if since is None else since) + self._idle_timeout_s, self._watch
        )

"""A process-wide byte budget for upload buffers: the backpressure that bounds upload memory.

Every S3 part buffer is paid for here before it is filled and paid back once it is sent. When
the budget is spent, `acquire` waits, so the upload route stops reading from its client and
memory stays bounded however many uploads run at once. Waiters are served first come, first
served: a large request is never starved by a stream of small ones slipping past it.

The budget belongs to one event loop; call it from coroutines on that loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from upload_service.config import Settings

_MIB = 1024 * 1024


class BufferBudget:
    """A fair asynchronous semaphore counted in bytes."""

    def __init__(self, capacity_bytes: int) -> None:
        if capacity_bytes <= 0:
            raise ValueError("the buffer budget must be a positive number of bytes")
        self._capacity = capacity_bytes
        self._available = capacity_bytes
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> BufferBudget:
        """Build the budget from `UPLOAD_BUFFER_BUDGET_MB`."""
        return cls(settings.upload_buffer_budget_bytes)

    @classmethod
    def from_megabytes(cls, megabytes: int) -> BufferBudget:
        """Build a budget of `megabytes` MiB."""
        return cls(megabytes * _MIB)

    @property
    def capacity(self) -> int:
        """Total bytes of the budget."""
        return self._capacity

    @property
    def available(self) -> int:
        """Bytes that may be acquired right now (some may already be promised to waiters)."""
        return self._available

    @property
    def waiting(self) -> int:
        """How many acquirers are waiting."""
        return sum(1 for _, future in self._waiters if not future.done())

    async def acquire(self, nbytes: int) -> None:
        """Take `nbytes` from the budget, waiting in line while it is spent."""
        if nbytes <= 0:
            raise ValueError("acquire a positive number of bytes")
        if nbytes > self._capacity:
            # It could never be granted: fail now rather than wait forever.
            raise ValueError(f"{nbytes} bytes exceed the whole budget of {self._capacity}")
        # Taking the fast path only when nobody waits keeps the line fair.
        if not self._waiters and self._available >= nbytes:
            self._available -= nbytes
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (nbytes, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted in the same tick as the cancellation: give the bytes back.
                self.release(nbytes)
            else:
                self._waiters.remove(entry)
                # A cancelled head of the line may have been holding the others back.
                self._grant()
            raise

    def release(self, nbytes: int) -> None:
        """Give `nbytes` back and wake the waiters they satisfy, in order."""
        if nbytes <= 0:
            raise ValueError("release a positive number of bytes")
        if self._available + nbytes > self._capacity:
            raise RuntimeError("released more bytes than were acquired")
        self._available += nbytes
        self._grant()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold `nbytes` of the budget for the duration of a `async with` block."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    def _grant(self) -> None:
        while self._waiters:
            nbytes, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if nbytes > self._available:
                # Strict FIFO: later, smaller requests wait behind the head.
                return
            self._waiters.popleft()
            self._available -= nbytes
            future.set_result(None)

"""Parts of one multipart upload sent while more bytes arrive: a plain write's or a tus append's.

Both fill a part, hand it to `send` and go on filling the next; at most `max_parts_in_flight`
parts are sending at once, each holding its buffer (paid for in the budget) until it is sent,
so the next one waits in `make_room`. Every operation whose thread may outlive a cancelled
caller is tracked, so that cleanup can wait for all of them (`settle`) instead of guessing.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

MAX_PARTS = 10_000


class PartsInFlight:
    """The parts of one write being sent, oldest first, and the numbers of the next ones."""

    def __init__(self, max_in_flight: int, next_part_number: int = 1) -> None:
        self._max_in_flight = max_in_flight
        self._next_part_number = next_part_number
        self._in_flight: collections.deque[asyncio.Future[None]] = collections.deque()
        self._pending: set[asyncio.Future[Any]] = set()

    async def make_room(self) -> int:
        """Wait until another part may be sent; its number (at most `MAX_PARTS`)."""
        while len(self._in_flight) >= self._max_in_flight:
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft()
        part_number = self._next_part_number
        if part_number > MAX_PARTS:
            raise ValueError(f"an object may have at most {MAX_PARTS} parts")
        self._next_part_number += 1
        return part_number

    def send(self, sending: Coroutine[Any, Any, None]) -> None:
        """Send a part (the coroutine uploads it and releases its buffer) while bytes go on."""
        self._in_flight.append(self.track(sending))

    async def wait_all(self) -> None:
        """Wait for every part sent so far; the first failure is raised."""
        while self._in_flight:
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft()

    def track(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run an operation that `settle` will wait for."""
        task = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def guarded(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run an operation to its end even if the caller is cancelled meanwhile."""
        # Shielded: the operation ends anyway (its thread would), and cleanup sees its outcome.
        return await asyncio.shield(self.track(coroutine))

    async def settle(self) -> None:
        """Let every operation started end (a part still sending owns its budget); never raises."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)

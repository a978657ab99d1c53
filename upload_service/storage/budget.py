"""A process-wide byte budget for upload buffers: the backpressure that bounds upload memory.

Every buffer an upload fills (an S3 part, a batch of local writes) is paid for here before it
is filled and paid back once it is sent, so memory stays bounded however many uploads run at
once; while the budget is spent, the writer waits and the route stops reading its client.

A buffer pays as it grows (`Reservation`): in small steps while it is small, so a 10-byte upload
holds 64 KiB rather than a whole 8 MiB part, then for a whole buffer at once. Two lines wait:

- whole buffers, first come first served (a large request is never starved by small ones);
- first steps, granted only while the steps held leave room for a whole buffer.

A buffer that already holds steps never waits for another step: it asks for a whole buffer in
the first line instead. So nobody waits for more while holding a share that others wait for,
and the steps held can never add up to so much that no whole buffer could ever be had: the
budget cannot deadlock, whatever mix of uploads shares it. A wait is bounded (`max_wait_s`):
past it the upload is refused with 503 rather than queued forever behind a saturated process.

The budget belongs to one event loop; call it from coroutines on that loop only.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from upload_service.errors import ServerBusy

if TYPE_CHECKING:
    from upload_service.config import Settings

_MIB = 1024 * 1024
# A buffer grows in steps of this much (the largest chunk the upload door hands on) ...
STEP_BYTES = 64 * 1024
# ... up to this size; past it, it holds a whole buffer.
STEPPED_UP_TO = 1 * _MIB


class BufferBudget:
    """A fair asynchronous semaphore counted in bytes, with a second line for small steps."""

    def __init__(self, capacity_bytes: int, *, max_wait_s: float | None = None) -> None:
        if capacity_bytes <= 0:
            raise ValueError("the buffer budget must be a positive number of bytes")
        self._capacity = capacity_bytes
        self._available = capacity_bytes
        self._stepped = 0
        self._max_wait_s = max_wait_s
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        # (bytes, room a whole buffer needs, future)
        self._step_waiters: deque[tuple[int, int, asyncio.Future[None]]] = deque()

    @classmethod
    def from_settings(cls, settings: Settings) -> BufferBudget:
        """Build the budget from `UPLOAD_BUFFER_BUDGET_MB`; a wait is bounded by
        `UPLOAD_IDLE_TIMEOUT_S`, as long as a client may stay silent."""
        return cls(settings.upload_buffer_budget_bytes, max_wait_s=settings.upload_idle_timeout_s)

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
    def stepped(self) -> int:
        """Bytes held in steps by buffers that are still small."""
        return self._stepped

    @property
    def waiting(self) -> int:
        """How many acquirers are waiting, in either line."""
        waiting = sum(1 for _, future in self._waiters if not future.done())
        return waiting + sum(1 for _, _, future in self._step_waiters if not future.done())

    async def acquire(self, nbytes: int) -> None:
        """Take `nbytes` for a whole buffer, waiting in line while the budget is spent."""
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
        await self._wait(future, lambda: self._waiters.remove(entry), nbytes, stepped=False)

    async def acquire_step(self, nbytes: int, *, room: int) -> None:
        """Take a first step of `nbytes` for a small buffer, leaving `room` for a whole one.

        Only for a buffer that holds nothing yet: one that holds steps uses `try_step`.
        """
        if nbytes <= 0:
            raise ValueError("acquire a positive number of bytes")
        if nbytes > self._capacity - room:
            raise ValueError(f"no step of {nbytes} bytes fits beside {room} bytes of room")
        if not self._step_waiters and self._step_fits(nbytes, room):
            self._take_step(nbytes)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (nbytes, room, future)
        self._step_waiters.append(entry)
        await self._wait(future, lambda: self._step_waiters.remove(entry), nbytes, stepped=True)

    def try_step(self, nbytes: int, *, room: int) -> bool:
        """Take another step of `nbytes` if it can be had at once; never waits."""
        if self._step_waiters or not self._step_fits(nbytes, room):
            return False
        self._take_step(nbytes)
        return True

    def promote(self, stepped_bytes: int) -> None:
        """Count `stepped_bytes` held in steps as part of a whole buffer from now on."""
        self._stepped -= stepped_bytes
        self._grant()

    def release(self, nbytes: int, *, stepped: bool = False) -> None:
        """Give `nbytes` back and wake the waiters they satisfy, in order."""
        if nbytes <= 0:
            raise ValueError("release a positive number of bytes")
        if self._available + nbytes > self._capacity:
            raise RuntimeError("released more bytes than were acquired")
        self._available += nbytes
        if stepped:
            self._stepped -= nbytes
        self._grant()

    @asynccontextmanager
    async def reserve(self, nbytes: int) -> AsyncIterator[None]:
        """Hold `nbytes` of the budget for the duration of a `async with` block."""
        await self.acquire(nbytes)
        try:
            yield
        finally:
            self.release(nbytes)

    def _step_fits(self, nbytes: int, room: int) -> bool:
        return nbytes <= self._available and self._stepped + nbytes <= self._capacity - room

    def _take_step(self, nbytes: int) -> None:
        self._available -= nbytes
        self._stepped += nbytes

    async def _wait(
        self,
        future: asyncio.Future[None],
        leave_line: Callable[[], None],
        nbytes: int,
        *,
        stepped: bool,
    ) -> None:
        try:
            async with asyncio.timeout(self._max_wait_s):
                await future
        except BaseException as exc:
            if future.done() and not future.cancelled():
                # Granted in the same tick as the cancellation: give the bytes back.
                self.release(nbytes, stepped=stepped)
            else:
                # A release in between may already have dropped the cancelled entry.
                with suppress(ValueError):
                    leave_line()
                # A head of the line that gave up may have been holding the others back.
                self._grant()
            if isinstance(exc, TimeoutError):
                raise ServerBusy() from None
            raise

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters:
            nbytes, future = waiters[0]
            if future.done():
                waiters.popleft()
                continue
            if nbytes > self._available:
                # Strict FIFO: later, smaller requests wait behind the head.
                break
            waiters.popleft()
            self._available -= nbytes
            future.set_result(None)
        steps = self._step_waiters
        while steps:
            nbytes, room, step_future = steps[0]
            if step_future.done():
                steps.popleft()
                continue
            if not self._step_fits(nbytes, room):
                return
            steps.popleft()
            self._take_step(nbytes)
            step_future.set_result(None)


@dataclass(slots=True)
class Held:
    """A share of the budget handed over with a buffer (to the task that sends it)."""

    budget: BufferBudget
    nbytes: int
    stepped: bool

    def release(self) -> None:
        """Give the share back; releasing twice gives nothing back twice."""
        if self.nbytes:
            nbytes, self.nbytes = self.nbytes, 0
            self.budget.release(nbytes, stepped=self.stepped)


class Reservation:
    """What the buffer being filled holds of the budget: steps while it is small, then whole.

    `cover(n)` before the buffer holds `n` bytes; `take()` hands the share over with the
    buffer when it is sent. A writer's later buffers are paid for whole at once: it has shown
    itself to be a large upload.
    """

    def __init__(self, budget: BufferBudget, whole: int) -> None:
        if whole > budget.capacity:
            raise ValueError(f"a buffer of {whole} bytes exceeds the whole budget")
        self._budget = budget
        self._whole = whole
        # With too little room beside a whole buffer for even one step, every buffer is whole.
        self._stepping = budget.capacity - whole >= STEP_BYTES
        self._in_steps = False
        self.held = 0

    async def cover(self, nbytes: int) -> None:
        """Hold at least `nbytes` (capped at a whole buffer), waiting while the budget is spent."""
        nbytes = min(nbytes, self._whole)
        if nbytes <= self.held:
            return
        budget = self._budget
        if self._stepping and nbytes <= STEPPED_UP_TO:
            target = min(-(-nbytes // STEP_BYTES) * STEP_BYTES, STEPPED_UP_TO)
            more = target - self.held
            if self.held == 0:
                await budget.acquire_step(more, room=self._whole)
                self.held, self._in_steps = more, True
                return
            if budget.try_step(more, room=self._whole):
                self.held += more
                return
            # Refused: waiting for a step while holding some could deadlock; a whole buffer
            # is what the first line always ends up granting.
        await budget.acquire(self._whole - self.held)
        if self._in_steps:
            budget.promote(self.held)
            self._in_steps = False
        self.held = self._whole

    def take(self) -> Held:
        """Hand over the share held, for the buffer about to be sent; the next one starts at 0."""
        held = Held(self._budget, self.held, self._in_steps)
        self.held, self._in_steps, self._stepping = 0, False, False
        return held

    def release(self) -> None:
        """Give back whatever is held (the buffer is dropped)."""
        self.take().release()

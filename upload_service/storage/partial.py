"""Partial objects: one object's bytes written by several requests, possibly by several processes.

A resumable upload (tus) appends to an object over many requests, any of which may be served by
another process, or cut off, or followed by a crash. So the storage's own state of a partial
object (the S3 multipart upload id and the parts sent so far, the short tail kept apart until it
can be a part; nothing for a local partial file) is a JSON-able `PartialState` that the caller
keeps in its database row next to the offset, and every call here takes that state and gives the
new one back. Nothing about a partial object lives in process memory between requests.

The rules every backend keeps:

- `append` returns an appender positioned at `offset`; bytes past `offset` left by an earlier
  request that never saved (a crash, a rolled-back chunk) are ignored and overwritten.
- `Appender.save()` makes every byte written so far durable (S3: parts uploaded and the tail
  stored; local: written and fsynced) and only then returns the new offset and state: the caller
  moves its offset after that, never before.
- `Appender.rollback()` forgets every byte written by this appender (the state given to `append`
  stays valid); it never raises.
- `finish` turns the saved bytes into the object under its key, visible at once and complete;
  `discard` removes every byte and handle of the partial object (and never raises for what is
  already gone). After either, the state is spent.
- Part buffers are paid for in the process's `BufferBudget`, as plain uploads' are.
"""

from __future__ import annotations

from typing import Any, Protocol

# JSON-able (the caller stores it in a JSON column): dicts, lists, strings, numbers, None.
PartialState = dict[str, Any]


class Appender(Protocol):
    """Bytes appended to a partial object by one request."""

    async def write(self, chunk: bytes) -> None:
        """Append bytes; may wait (backpressure) while the process's buffer budget is spent."""
        ...

    async def save(self) -> tuple[int, PartialState]:
        """Make every byte written durable; return the new offset and the state to keep."""
        ...

    async def rollback(self) -> None:
        """Forget every byte this appender took, release its buffers; never raises."""
        ...


class PartialObjects(Protocol):
    """Where partial objects are kept until they are finished under their key."""

    async def begin(self, key: str) -> PartialState:
        """Start a partial object that will become `key`; return its (empty) state."""
        ...

    async def append(self, key: str, state: PartialState, offset: int) -> Appender:
        """An appender for the partial object at `offset` (the caller's durable offset)."""
        ...

    async def finish(self, key: str, state: PartialState) -> None:
        """Make the saved bytes the complete object under `key`; idempotent once it exists."""
        ...

    async def discard(self, key: str, state: PartialState) -> None:
        """Remove the partial object's bytes and handles; never raises for what is gone."""
        ...

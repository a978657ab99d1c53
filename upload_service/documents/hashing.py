"""sha256 of a stream, computed in a worker thread one block behind the stream.

hashlib releases the GIL on large inputs, so hashing megabyte blocks in a thread lets the event
loop keep receiving the next block meanwhile: on an upload, hashing stops costing loop time.
"""

from __future__ import annotations

import asyncio
import hashlib

BLOCK_BYTES = 256 * 1024


class StreamDigest:
    """Feed chunks in order with `update`; `hexdigest` waits for the last block."""

    def __init__(self, block_bytes: int = BLOCK_BYTES) -> None:
        self._digest = hashlib.sha256()
        self._block_bytes = block_bytes
        self._buffer = bytearray()
        self._pending: asyncio.Future[None] | None = None

    async def update(self, chunk: bytes) -> None:
        """Take the next chunk; hands a full block to a thread, waiting only for the previous."""
        self._buffer += chunk
        if len(self._buffer) >= self._block_bytes:
            await self._hand_off()

    async def hexdigest(self) -> str:
        """The digest of everything fed."""
        await self._hand_off()
        if self._pending is not None:
            await self._pending
            self._pending = None
        return self._digest.hexdigest()

    async def _hand_off(self) -> None:
        # Blocks must be hashed in order: wait for the one in flight before starting the next.
        if self._pending is not None:
            await self._pending
            self._pending = None
        if self._buffer:
            block, self._buffer = self._buffer, bytearray()
            self._pending = asyncio.ensure_future(asyncio.to_thread(self._digest.update, block))

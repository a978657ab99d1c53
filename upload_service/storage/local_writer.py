"""A local write: bytes fill a hidden temporary file that becomes the object on `commit`.

On commit the file is flushed, fsynced, renamed into place with `os.replace` and its directory
fsynced, so a reader sees either no object or the whole object, even after a crash. File I/O
runs in worker threads, in batches of a few megabytes, so the event loop never waits on the disk.
A batch is paid for in the process's `BufferBudget` as it fills, as S3 parts are, and paid back
once its thread has written it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from upload_service.storage.budget import BufferBudget, Reservation

logger = logging.getLogger(__name__)

T = TypeVar("T")

# A thread hop per batch: 4 MiB batches measured faster than 1 MiB (and 256 KiB slower still).
WRITE_BATCH_BYTES = 4 * 1024 * 1024
WRITEBACK_BYTES = 8 * 1024 * 1024
_ADVISE = hasattr(os, "posix_fadvise")


def fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BatchedFileWriter:
    """Bytes appended to an open file in batches, each written by a worker thread.

    The batching every local write shares (a new object, an append to a partial file): a full
    batch goes to a thread while the next one fills, paid for in the budget until written.
    `start` is where the file's writing position stands when the writer takes it over.
    """

    # A batch goes to a thread once this full; write-back starts every `writeback_every` bytes
    # (see `_write_batch`).
    batch_bytes = WRITE_BATCH_BYTES
    writeback_every = WRITEBACK_BYTES

    def __init__(self, file: BinaryIO, budget: BufferBudget, *, start: int = 0) -> None:
        self._file = file
        # The chunks as they came (bytes never change): batched by reference, written by a thread.
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._reservation = Reservation(budget, self.batch_bytes)
        self._pending: asyncio.Future[Any] | None = None
        self._start = start
        self._written = 0
        self._advised = start

    async def write(self, chunk: bytes) -> None:
        """Append bytes; each full batch goes to a thread while the next one fills.

        The chunk is kept, not copied: pass `bytes`, never a buffer that will be reused.
        """
        self._ensure_open()
        if not chunk:
            return
        try:
            if self._buffered + len(chunk) > self.batch_bytes:
                await self._flush_buffer()
            buffered = self._buffered + len(chunk)
            if buffered > self._reservation.held:
                await self._reservation.cover(buffered)
            self._chunks.append(chunk)
            self._buffered = buffered
        except Exception:
            await self._write_failed()
            raise

    async def _write_failed(self) -> None:
        """What a failed write leaves behind is discarded (each kind of writer knows how)."""
        raise NotImplementedError

    def _ensure_open(self) -> None:
        raise NotImplementedError

    def _drop_buffer(self) -> None:
        self._chunks, self._buffered = [], 0
        self._reservation.release()

    async def _flush_buffer(self) -> None:
        # At most one write in flight: wait for the previous one (its error surfaces here),
        # then hand this buffer to a thread and return, so the disk works while bytes arrive.
        await self._wait_for_pending()
        if not self._chunks:
            return
        self._pending = self._hand_over(self._write_full_batch)

    def _write_full_batch(self, batch: list[bytes], size: int) -> None:
        # A batch handed over while more bytes arrive (not the last one).
        self._write_batch(batch, size)

    def _hand_over(self, write: Callable[[list[bytes], int], T]) -> asyncio.Future[T]:
        # The buffer goes to a thread that runs `write(batch, size)`; the batch is paid back
        # once the thread is done with it, written or not.
        batch, size = self._chunks, self._buffered
        self._chunks, self._buffered = [], 0
        held = self._reservation.take()
        task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(write, batch, size))
        task.add_done_callback(lambda _: held.release())
        return task

    async def _wait_for_pending(self) -> None:
        pending = self._pending
        if pending is not None:
            await asyncio.shield(pending)

    async def _settle_pending(self) -> None:
        # A write still running in its thread must finish before the file is closed or cut.
        pending = self._pending
        if pending is not None and not pending.done():
            with contextlib.suppress(BaseException):
                await pending

    def _write_batch(self, batch: list[bytes], size: int) -> None:
        self._file.writelines(batch)
        self._written += size
        end = self._start + self._written
        if _ADVISE and end - self._advised >= self.writeback_every:
            # Start writeback of what is written so far (DONTNEED on dirty pages begins it
            # without waiting), so the final fsync only waits for the tail of the file.
            self._file.flush()
            os.posix_fadvise(
                self._file.fileno(), self._advised, end - self._advised, os.POSIX_FADV_DONTNEED
            )
            self._advised = end

    async def _in_thread(self, func: Callable[..., T], *args: object) -> T:
        # The thread keeps running if the caller is cancelled; `_pending` lets abort wait for it.
        task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(func, *args))
        self._pending = task
        return await asyncio.shield(task)


class LocalObjectWriter(BatchedFileWriter):
    """A write into a temporary file that becomes the object on `commit`."""

    def __init__(
        self,
        file: BinaryIO,
        temp_path: Path,
        final_path: Path,
        background: set[asyncio.Future[None]],
        budget: BufferBudget,
    ) -> None:
        super().__init__(file, budget)
        self._background = background
        self._temp_path = temp_path
        self._final_path = final_path
        self._published = False
        self._state = "open"

    async def _write_failed(self) -> None:
        await self.abort()

    async def commit(self) -> None:
        """Flush, fsync and rename the temporary file into place."""
        self._ensure_open()
        try:
            await self._flush_buffer()
            await self._wait_for_pending()
            await self._in_thread(self._publish)
        except Exception:
            await self.abort()
            raise
        self._state = "committed"

    async def abort(self) -> None:
        """Close and remove the temporary file; never raises."""
        if self._state != "open":
            return
        self._state = "aborted"
        self._drop_buffer()
        # Shielded so that a cancelled caller still leaves no temporary file behind; the
        # storage holds the task so it is neither garbage-collected nor cut short by aclose.
        cleanup = asyncio.ensure_future(self._discard())
        self._background.add(cleanup)
        cleanup.add_done_callback(self._background.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(cleanup)

    async def _discard(self) -> None:
        await self._settle_pending()
        try:
            await asyncio.to_thread(self._close_and_unlink)
            if self._published:
                # A commit whose caller was cancelled may have renamed the file into place
                # anyway: an aborted write leaves nothing behind.
                await asyncio.to_thread(self._final_path.unlink, missing_ok=True)
        except Exception:
            logger.warning("could not remove a temporary upload file", exc_info=True)

    def _close_and_unlink(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        self._temp_path.unlink(missing_ok=True)

    def _publish(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._temp_path, self._final_path)
        self._published = True
        fsync_directory(self._final_path.parent)

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the writer is already {self._state}")

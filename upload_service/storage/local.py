"""Local file storage: each object is a file under one root, written atomically.

A writer fills a hidden temporary file next to its target, then on commit flushes, fsyncs,
renames it into place with `os.replace` and fsyncs the directory, so a reader sees either no
object or the whole object, even after a crash. File I/O runs in worker threads, in batches of
about a megabyte, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Callable
from datetime import timedelta
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypeVar

from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange

logger = logging.getLogger(__name__)

T = TypeVar("T")

WRITE_BATCH_BYTES = 1024 * 1024
WRITEBACK_BYTES = 8 * 1024 * 1024
_ADVISE = hasattr(os, "posix_fadvise")
READ_CHUNK_BYTES = 256 * 1024
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"


class InvalidStorageKey(ValueError):
    """A key that is empty, absolute, or would leave the storage root."""


def _fsync_directory(directory: Path) -> None:
    # The rename is only durable once the directory entry itself is on disk.
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalObjectWriter:
    """A write into a temporary file that becomes the object on `commit`."""

    def __init__(
        self,
        file: BinaryIO,
        temp_path: Path,
        final_path: Path,
        background: set[asyncio.Future[None]],
    ) -> None:
        self._file = file
        self._background = background
        self._temp_path = temp_path
        self._final_path = final_path
        self._buffer = bytearray()
        self._pending: asyncio.Future[Any] | None = None
        self._written = 0
        self._advised = 0
        self._published = False
        self._state = "open"

    async def write(self, chunk: bytes) -> None:
        """Append bytes; each filled megabyte goes to a thread while the next one fills."""
        self._ensure_open()
        if not chunk:
            return
        try:
            self._buffer += chunk
            if len(self._buffer) >= WRITE_BATCH_BYTES:
                await self._flush_buffer()
        except Exception:
            await self.abort()
            raise

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
        self._buffer = bytearray()
        # Shielded so that a cancelled caller still leaves no temporary file behind; the
        # storage holds the task so it is neither garbage-collected nor cut short by aclose.
        cleanup = asyncio.ensure_future(self._discard())
        self._background.add(cleanup)
        cleanup.add_done_callback(self._background.discard)
        with contextlib.suppress(Exception):
            await asyncio.shield(cleanup)

    async def _discard(self) -> None:
        pending = self._pending
        if pending is not None and not pending.done():
            # A write still running in its thread must finish before the file is closed.
            with contextlib.suppress(BaseException):
                await pending
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
        _fsync_directory(self._final_path.parent)

    async def _flush_buffer(self) -> None:
        # At most one write in flight: wait for the previous one (its error surfaces here),
        # then hand this buffer to a thread and return, so the disk works while bytes arrive.
        await self._wait_for_pending()
        if not self._buffer:
            return
        data, self._buffer = self._buffer, bytearray()
        self._pending = asyncio.ensure_future(asyncio.to_thread(self._write_block, data))

    async def _wait_for_pending(self) -> None:
        pending = self._pending
        if pending is not None:
            await asyncio.shield(pending)

    def _write_block(self, data: bytearray) -> None:
        self._file.write(data)
        self._written += len(data)
        if _ADVISE and self._written - self._advised >= WRITEBACK_BYTES:
            # Start writeback of what is written so far (DONTNEED on dirty pages begins it
            # without waiting), so the fsync at commit only waits for the tail of the file.
            self._file.flush()
            os.posix_fadvise(
                self._file.fileno(),
                self._advised,
                self._written - self._advised,
                os.POSIX_FADV_DONTNEED,
            )
            self._advised = self._written

    async def _in_thread(self, func: Callable[..., T], *args: object) -> T:
        # The thread keeps running if the caller is cancelled; `_pending` lets abort wait for it.
        task: asyncio.Future[T] = asyncio.ensure_future(asyncio.to_thread(func, *args))
        self._pending = task
        return await asyncio.shield(task)

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the writer is already {self._state}")


class LocalStorage:
    """Objects as files under `root`; keys are relative POSIX paths such as `raw/doc_X.pdf`."""

    def __init__(self, root: Path) -> None:
        self._root = Path(os.path.abspath(root))
        self._background: set[asyncio.Future[None]] = set()
        # Created once at start-up so that a fresh machine is ready; `check` reports failures.
        with contextlib.suppress(OSError):
            self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The directory that holds every object."""
        return self._root

    def path_for(self, key: str) -> Path:
        """The file of `key`, refusing keys that are empty, absolute or escape the root."""
        if not key or "\x00" in key or "\\" in key:
            raise InvalidStorageKey("invalid storage key")
        pure = PurePosixPath(key)
        if pure.is_absolute() or key.endswith("/"):
            raise InvalidStorageKey("invalid storage key")
        parts = key.split("/")
        # Hidden names are refused too: they are where temporary files live.
        if any(part in ("", ".", "..") or part.startswith(".") for part in parts):
            raise InvalidStorageKey("invalid storage key")
        return self._root.joinpath(*parts)

    async def open_writer(self, key: str, content_type: str) -> LocalObjectWriter:
        """Start writing a new object under `key` (content type is not kept for local files)."""
        final_path = self.path_for(key)

        def create() -> tuple[BinaryIO, Path]:
            final_path.parent.mkdir(parents=True, exist_ok=True)
            fd, temp_name = tempfile.mkstemp(
                dir=final_path.parent, prefix=f"{TEMP_PREFIX}{final_path.name}.", suffix=TEMP_SUFFIX
            )
            return os.fdopen(fd, "wb"), Path(temp_name)

        try:
            file, temp_path = await asyncio.to_thread(create)
        except OSError as exc:
            raise StorageUnavailable("local storage is not writable") from exc
        return LocalObjectWriter(file, temp_path, final_path, self._background)

    async def read(
        self, key: str, byte_range: ByteRange | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream the object's bytes in chunks, or only `byte_range`; a missing key raises."""
        path = self.path_for(key)

        def open_at_start() -> tuple[BinaryIO, int]:
            file = path.open("rb")
            try:
                size = os.fstat(file.fileno()).st_size
                if byte_range is None:
                    return file, size
                file.seek(byte_range.start)
                return file, min(byte_range.length, max(0, size - byte_range.start))
            except BaseException:
                file.close()
                raise

        try:
            file, remaining = await asyncio.to_thread(open_at_start)
        except FileNotFoundError:
            raise FileNotFoundError(f"no object under key {key!r}") from None
        try:
            # Bounded by the size the file had when opened (a commit replaces, never appends).
            while remaining > 0:
                chunk = await asyncio.to_thread(file.read, min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        finally:
            await asyncio.to_thread(file.close)

    async def exists(self, key: str) -> bool:
        """Whether a committed object is stored under `key`."""
        return await asyncio.to_thread(self.path_for(key).is_file)

    async def delete(self, key: str) -> None:
        """Remove the object; a missing object is not an error."""
        await asyncio.to_thread(self.path_for(key).unlink, missing_ok=True)

    async def check(self) -> None:
        """Raise `StorageUnavailable` unless a file can be created in the root directory."""

        def probe() -> None:
            # Writers recreate a missing root, so a missing root is not a failure either.
            self._root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self._root, prefix=TEMP_PREFIX):
                pass

        try:
            await asyncio.to_thread(probe)
        except OSError as exc:
            raise StorageUnavailable("local storage directory is not writable") from exc

    async def abort_incomplete_uploads(self, older_than: timedelta) -> int:
        """Delete temporary files a crash left, older than `older_than` (for the janitor)."""

        def sweep() -> int:
            cutoff = time.time() - older_than.total_seconds()
            removed = 0
            for path in self._root.rglob(f"{TEMP_PREFIX}*"):
                with contextlib.suppress(FileNotFoundError):
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
            return removed

        return await asyncio.to_thread(sweep)

    async def aclose(self) -> None:
        """Wait (briefly) for aborted writes to finish removing their temporary files."""
        if self._background:
            await asyncio.wait(self._background, timeout=10)

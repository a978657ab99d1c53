"""Local partial objects: a resumable upload's bytes in one file under the root's `.partial/`.

The file of key `raw/doc_X.pdf` is `<root>/.partial/raw/doc_X.pdf`: a hidden directory, so no key
can name it (`LocalStorage.path_for` refuses hidden names), listings skip it and the janitor's
sweep of `raw/` never sees it. An append cuts the file back to the caller's offset first, so
bytes an earlier request wrote but never saved are forgotten; each batch is fdatasynced by its
thread while the next bytes arrive, and `save` syncs the last one before it hands back the new
offset; `finish` renames the file onto the key's path as a plain write's commit does.
The state kept in the database is empty: the key alone says where the bytes are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from upload_service.errors import StorageUnavailable
from upload_service.storage.budget import BufferBudget
from upload_service.storage.local_writer import BatchedFileWriter, fsync_directory
from upload_service.storage.partial import PartialState

logger = logging.getLogger(__name__)

PARTIAL_DIR = ".partial"
# Measured (8 MiB PATCHes arriving at 400 MiB/s, a loaded machine): from the last byte to
# `save` returning, 4 MiB batches with write-back started ~8 ms, 2 MiB batches each synced in
# its thread ~3-6 ms; 1 MiB batches were no better than 2 MiB and cost twice the syncs.
APPEND_BATCH_BYTES = 2 * 1024 * 1024


class PartialBytesMissing(StorageUnavailable):
    """The partial file holds fewer bytes than the upload's saved offset: storage lost them."""

    default_message = "The upload's saved bytes are missing from storage"


class LocalAppender(BatchedFileWriter):
    """Bytes appended to a partial file from `start`, durable once `save` returns."""

    # The PATCH ends in an fdatasync the client waits for: every batch but the last is made
    # durable by its own thread while the next bytes arrive, so the last fdatasync has only the
    # last batch to write. Smaller batches than a plain write's keep that last one short.
    batch_bytes = APPEND_BATCH_BYTES
    writeback_every = sys.maxsize  # Never: each batch is synced instead.

    def __init__(self, file: BinaryIO, path: Path, start: int, budget: BufferBudget) -> None:
        super().__init__(file, budget, start=start)
        self._path = path
        self._state = "open"

    async def save(self) -> tuple[int, PartialState]:
        """Write what is buffered, fsync, close; the new offset counts every byte written.

        The last batch, the fsync and the close run in one thread hop: a small PATCH is
        nothing but that batch, and every hop is a wake-up on a loaded machine.
        """
        self._ensure_open()
        try:
            await self._wait_for_pending()
            last = self._hand_over(self._write_sync_and_close)
            self._pending = last
            await asyncio.shield(last)
        except Exception:
            await self.rollback()
            raise
        self._state = "saved"
        return self._start + self._written, {}

    async def rollback(self) -> None:
        """Cut the file back to where this appender began; never raises."""
        if self._state != "open":
            return
        self._state = "rolled back"
        self._drop_buffer()
        # Shielded: a cancelled request still leaves the file as it found it.
        with contextlib.suppress(Exception):
            await asyncio.shield(self._cut_back())

    async def _cut_back(self) -> None:
        await self._settle_pending()
        try:
            await asyncio.to_thread(self._truncate_and_close)
        except Exception:
            logger.warning("could not cut a partial upload file back", exc_info=True)

    def _truncate_and_close(self) -> None:
        try:
            os.ftruncate(self._file.fileno(), self._start)
        finally:
            with contextlib.suppress(OSError):
                self._file.close()

    def _write_full_batch(self, batch: list[bytes], size: int) -> None:
        self._write_batch(batch, size)
        self._file.flush()
        os.fdatasync(self._file.fileno())

    def _write_sync_and_close(self, batch: list[bytes], size: int) -> None:
        try:
            self._write_batch(batch, size)
            self._file.flush()
            # The data and the file's new size, which is all a read of it needs: no mtime.
            os.fdatasync(self._file.fileno())
        finally:
            self._file.close()

    async def _write_failed(self) -> None:
        await self.rollback()

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the appender is already {self._state}")


class LocalPartialObjects:
    """Partial files under `<root>/.partial/`, finished by a rename onto the key's path."""

    def __init__(self, root: Path, path_for: Callable[[str], Path], budget: BufferBudget) -> None:
        self._root = root
        self._path_for = path_for
        self._budget = budget

    def partial_path(self, key: str) -> Path:
        """The partial file of `key` (checked as a key first, so it cannot leave the root)."""
        final = self._path_for(key)
        return self._root / PARTIAL_DIR / final.relative_to(self._root)

    async def begin(self, key: str) -> PartialState:
        """Nothing to create: the file appears with the first append."""
        self._path_for(key)
        return {}

    async def append(self, key: str, state: PartialState, offset: int) -> LocalAppender:
        """Open the partial file at `offset`, cutting off whatever was written past it unsaved."""
        path = self.partial_path(key)

        def open_at_offset() -> BinaryIO:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                size = os.fstat(fd).st_size
                if size < offset:
                    raise PartialBytesMissing()
                if size > offset:
                    os.ftruncate(fd, offset)  # Bytes an earlier request wrote but never saved.
                os.lseek(fd, offset, os.SEEK_SET)
                if offset == 0:
                    # A new file's name is durable only once its directory is: without this a
                    # power loss could drop a file whose first bytes were already counted.
                    fsync_directory(path.parent)
            except BaseException:
                os.close(fd)
                raise
            return os.fdopen(fd, "wb")

        try:
            file = await asyncio.to_thread(open_at_offset)
        except PartialBytesMissing:
            raise
        except OSError as exc:
            raise StorageUnavailable("local storage is not writable") from exc
        return LocalAppender(file, path, offset, self._budget)

    async def finish(self, key: str, state: PartialState) -> None:
        """Fsync the partial file and rename it onto the key's path; done already is fine."""
        partial, final = self.partial_path(key), self._path_for(key)

        def publish() -> None:
            try:
                fd = os.open(partial, os.O_RDONLY)
            except FileNotFoundError:
                if final.is_file():
                    return  # Finished by an earlier attempt whose answer was lost.
                raise
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(partial, final)
            fsync_directory(final.parent)

        await asyncio.to_thread(publish)

    async def discard(self, key: str, state: PartialState) -> None:
        """Remove the partial file; one already gone is not an error."""
        await asyncio.to_thread(self.partial_path(key).unlink, missing_ok=True)

"""Local file storage: each object is a file under one root, written atomically.

A writer (`local_writer.py`) fills a hidden temporary file next to its target and renames it into
place on commit, so names starting with a dot are never objects. File I/O runs in worker threads,
so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import tempfile
import time
from collections.abc import AsyncGenerator, Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange, StoredObject
from upload_service.storage.budget import BufferBudget
from upload_service.storage.local_partial import LocalPartialObjects
from upload_service.storage.local_writer import LocalObjectWriter

READ_CHUNK_BYTES = 256 * 1024
TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"
LIST_BATCH = 1000
DEFAULT_BUDGET_MB = 64


@dataclass(slots=True)
class _ScanBatch:
    objects: list[StoredObject] = field(default_factory=list)
    directories: list[Path] = field(default_factory=list)
    scanned: int = 0
    exhausted: bool = False


class InvalidStorageKey(ValueError):
    """A key that is empty, absolute, or would leave the storage root."""


class LocalStorage:
    """Objects as files under `root`; keys are relative POSIX paths such as `raw/doc_X.pdf`.

    Writes buffer in `budget`: the service passes the process's one budget; tools and tests
    that pass none get one of their own of the default size.
    """

    def __init__(self, root: Path, budget: BufferBudget | None = None) -> None:
        self._root = Path(os.path.abspath(root))
        self.budget = budget or BufferBudget.from_megabytes(DEFAULT_BUDGET_MB)
        self._background: set[asyncio.Future[None]] = set()
        self._partial_objects = LocalPartialObjects(self._root, self.path_for, self.budget)
        # Created once at start-up so that a fresh machine is ready; `check` reports failures.
        with contextlib.suppress(OSError):
            self._root.mkdir(parents=True, exist_ok=True)

    @property
    def root(self) -> Path:
        """The directory that holds every object."""
        return self._root

    @property
    def partial_objects(self) -> LocalPartialObjects:
        """Resumable uploads' partial files, under the root's hidden `.partial/`."""
        return self._partial_objects

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
        return LocalObjectWriter(file, temp_path, final_path, self._background, self.budget)

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

    async def list_objects(self, prefix: str) -> AsyncGenerator[StoredObject, None]:
        """Stream the committed objects whose key starts with `prefix`, a batch at a time."""
        first = self._directory_of(prefix)
        directories = [first]
        # Bounded: each directory is listed once (links are not followed), in batches of
        # LIST_BATCH entries, so a directory of a million files is never held in memory.
        while directories:
            directory = directories.pop()
            try:
                entries = await asyncio.to_thread(os.scandir, directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                while True:
                    batch = await asyncio.to_thread(self._scan_batch, entries, prefix)
                    directories.extend(batch.directories)
                    for stored in batch.objects:
                        yield stored
                    if batch.exhausted:
                        break
            finally:
                await asyncio.to_thread(entries.close)

    async def abort_incomplete_uploads(
        self, older_than: timedelta, prefix: str = "", keep: Collection[str] = ()
    ) -> int:
        """Delete temporary files a crash left under `prefix`, older than `older_than`.

        Temporary files of the keys in `keep` stay (the caller knows them to be alive).
        """
        kept = frozenset(keep)
        directory = self._directory_of(prefix)

        def sweep() -> int:
            cutoff = time.time() - older_than.total_seconds()
            removed = 0
            for path in directory.rglob(f"{TEMP_PREFIX}*"):
                key = self._key_of_temp(path)
                if not key.startswith(prefix) or key in kept:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    if path.is_file() and path.stat().st_mtime < cutoff:
                        path.unlink()
                        removed += 1
            return removed

        return await asyncio.to_thread(sweep)

    def _directory_of(self, prefix: str) -> Path:
        # The deepest directory that holds every key starting with `prefix`.
        directory = prefix.rpartition("/")[0]
        return self.path_for(directory) if directory else self._root

    def _key_of_temp(self, path: Path) -> str:
        # `.tmp-<name>.<random>.part` becomes `<name>` on commit (see `open_writer`).
        name = path.name.removeprefix(TEMP_PREFIX).removesuffix(TEMP_SUFFIX).rpartition(".")[0]
        return path.parent.joinpath(name).relative_to(self._root).as_posix()

    def _scan_batch(self, entries: Iterator[os.DirEntry[str]], prefix: str) -> _ScanBatch:
        batch = _ScanBatch()
        for entry in itertools.islice(entries, LIST_BATCH):
            batch.scanned += 1
            if entry.name.startswith("."):
                continue  # temporary files of writes in progress, never objects
            key = Path(entry.path).relative_to(self._root).as_posix()
            try:
                if entry.is_dir(follow_symlinks=False):
                    if f"{key}/".startswith(prefix) or prefix.startswith(f"{key}/"):
                        batch.directories.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False) and key.startswith(prefix):
                    stat = entry.stat(follow_symlinks=False)
                    modified_at = datetime.fromtimestamp(stat.st_mtime, UTC)
                    batch.objects.append(StoredObject(key, stat.st_size, modified_at))
            except FileNotFoundError:
                continue  # deleted while we listed
        batch.exhausted = batch.scanned < LIST_BATCH
        return batch

    async def aclose(self) -> None:
        """Wait (briefly) for aborted writes to finish removing their temporary files."""
        if self._background:
            await asyncio.wait(self._background, timeout=10)

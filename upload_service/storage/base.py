"""The storage protocol that the upload pipeline and the job handlers talk to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from upload_service.storage.partial import PartialObjects


@dataclass(frozen=True, slots=True)
class ByteRange:
    """An inclusive byte range, already checked against the object's size."""

    start: int
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A committed object as a listing sees it; `modified_at` is timezone-aware UTC."""

    key: str
    size: int
    modified_at: datetime


class ObjectWriter(Protocol):
    """A write in progress: bytes go out as they come; nothing is visible before `commit`."""

    async def write(self, chunk: bytes) -> None:
        """Append bytes; may wait (backpressure) while the process's buffer budget is spent."""
        ...

    async def commit(self) -> None:
        """Make the object visible under its key, complete, at once."""
        ...

    async def abort(self) -> None:
        """Discard everything written (temporary file, S3 multipart upload); never raises."""
        ...


class Storage(Protocol):
    """Where document bytes live."""

    async def open_writer(self, key: str, content_type: str) -> ObjectWriter:
        """Start writing a new object under `key`."""
        ...

    def read(self, key: str, byte_range: ByteRange | None = None) -> AsyncIterator[bytes]:
        """Stream the object's bytes, or a range of them."""
        ...

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object; deleting a missing object is not an error."""
        ...

    def list_objects(self, prefix: str) -> AsyncIterator[StoredObject]:
        """Stream the committed objects whose key starts with `prefix`, a page at a time."""
        ...

    async def abort_incomplete_uploads(
        self, older_than: timedelta, prefix: str = "", keep: Collection[str] = ()
    ) -> int:
        """Discard unfinished writes under `prefix` begun over `older_than` ago; count them.

        Writes to the keys in `keep` are left alone: they belong to resumable uploads that are
        still alive, however long ago they began.
        """
        ...

    @property
    def partial_objects(self) -> PartialObjects:
        """Where resumable uploads keep their bytes until they are finished (`partial.py`)."""
        ...

    async def check(self) -> None:
        """Health check for readiness; raises `StorageUnavailable` when unreachable."""
        ...

    async def aclose(self) -> None:
        """Release clients and threads."""
        ...

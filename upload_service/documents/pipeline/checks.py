"""The checks every document's bytes pass, whichever door they came in by: size, type, sha256.

A door feeds the bytes as they arrive (`StreamCheck.pump`), or has a finished object read back
once (`verify_stored`) when they were written elsewhere: by several requests, another process,
or the client straight to S3.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from upload_service.documents.filenames import safe_filename
from upload_service.documents.sniff import ContentSniffer, extension_of
from upload_service.errors import EmptyFile, FileTooLarge
from upload_service.storage.base import Storage


class ChunkSink(Protocol):
    """Where checked bytes go: an object writer, or an appender to a partial object."""

    async def write(self, chunk: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckedFile:
    """A file whose every byte passed the checks: its safe name, sniffed type, size and sha256."""

    filename: str
    content_type: str
    size: int
    sha256: str


class StreamCheck:
    """Checks one file's bytes in order: under the size limit, of its name's type, and hashed.

    Building it refuses a filename whose extension is not accepted, before any byte is read.
    """

    def __init__(self, filename: str, *, max_bytes: int, allowed_extensions: list[str]) -> None:
        self.filename = safe_filename(filename)
        self.extension = extension_of(self.filename)
        self._sniffer = ContentSniffer(self.extension, allowed_extensions)
        self._max_bytes = max_bytes
        self._digest = hashlib.sha256()
        self._size = 0

    @property
    def size(self) -> int:
        """How many bytes were checked so far."""
        return self._size

    async def pump(self, chunks: AsyncIterator[bytes], writer: ChunkSink | None) -> None:
        """Check each chunk and pass it to `writer` (if any); raise at the first that fails.

        After a failure the running state is spent: a door starts again or verifies the object.
        """
        # The hot loop of every upload: the same few calls per chunk as a hand-written loop,
        # with the state in locals and written back once.
        max_bytes = self._max_bytes
        sniffer = self._sniffer
        digest = self._digest
        size = self._size
        try:
            # Hashed on the loop, chunk by chunk (64 KiB at most, tens of microseconds each).
            # Hashing in a thread measured slower on every path: the GIL hand-backs cost more.
            async for chunk in chunks:
                size += len(chunk)
                if size > max_bytes:
                    raise FileTooLarge(max_bytes)
                sniffer.feed(chunk)
                sniffer.check_prefix()  # Fails fast on a wrong type, before 50 MB of it is stored.
                digest.update(chunk)
                if writer is not None:
                    await writer.write(chunk)
        finally:
            self._size = size

    def finish(self) -> CheckedFile:
        """The file as checked, once its last byte passed; raise if it is empty or not its type."""
        if self._size == 0:
            raise EmptyFile()
        content_type = self._sniffer.finish()
        return CheckedFile(self.filename, content_type, self._size, self._digest.hexdigest())


async def verify_stored(storage: Storage, key: str, check: StreamCheck) -> CheckedFile:
    """Read a finished object back once through a fresh `check`: its type, size and sha256."""
    await check.pump(storage.read(key), None)
    return check.finish()

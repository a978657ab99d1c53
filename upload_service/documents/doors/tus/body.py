"""A PATCH body as the tus door reads it: never past `Upload-Length`, hashed for its checksum."""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator

from upload_service.documents.doors.tus.protocol import Checksum
from upload_service.errors import TusChecksumMismatch, TusRequestInvalid


class PatchBody:
    """The body's chunks; a body longer than what the upload still lacks fails before its
    first byte past the length is handed on."""

    def __init__(
        self, chunks: AsyncIterator[bytes], remaining: int, checksum: Checksum | None
    ) -> None:
        self._chunks = chunks
        self._remaining = remaining
        self._checksum = checksum
        self._hasher = checksum.new_hasher() if checksum is not None else None
        self.received = 0

    def __aiter__(self) -> PatchBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        self.received += len(chunk)
        if self.received > self._remaining:
            raise TusRequestInvalid("The body goes past Upload-Length; nothing of it was kept")
        if self._hasher is not None:
            self._hasher.update(chunk)
        return chunk

    def verify_checksum(self) -> None:
        """460 unless the whole body matched its `Upload-Checksum` (when one was sent)."""
        if self._checksum is None or self._hasher is None:
            return
        if not hmac.compare_digest(self._hasher.digest(), self._checksum.digest):
            raise TusChecksumMismatch()

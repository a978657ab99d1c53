"""Direct uploads: the client sends bytes straight to the store through presigned requests.

The service signs, then reads back what arrived; the store offers the few calls that takes. Only
S3 has them (`s3_direct.py`): with local storage there are no direct uploads at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PresignedPost:
    """A browser-style form POST: send `fields` then the file (field `file`, last) to `url`."""

    url: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class HeldPart:
    """A part of a multipart upload that the store already holds."""

    part_number: int
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class StoredHead:
    """A stored object's size and its first bytes (all of them when it is shorter)."""

    size: int
    head: bytes


class PartsRefused(Exception):
    """The store would not assemble the parts into one object (a part missing or too small)."""


class DirectUploads(Protocol):
    """What a direct upload needs of the store, besides the `Storage` protocol's own calls."""

    def presign_post(
        self, key: str, *, max_size: int, content_type: str, sha256_b64: str | None, ttl_s: int
    ) -> PresignedPost:
        """A POST that can only write `key`, 1 to `max_size` bytes, until `ttl_s` from now."""
        ...

    def presign_parts(
        self, key: str, multipart_id: str, sizes: dict[int, int], ttl_s: int
    ) -> dict[int, str]:
        """A PUT URL per part number in `sizes`, for exactly that many bytes, for `ttl_s`."""
        ...

    async def start_multipart(self, key: str, content_type: str) -> str:
        """Begin a multipart upload of `key`; its id."""
        ...

    async def held_parts(self, key: str, multipart_id: str) -> list[HeldPart] | None:
        """Every part the store holds, by number; None when the upload is no longer open."""
        ...

    async def finish_multipart(
        self, key: str, multipart_id: str, parts: list[HeldPart], size: int
    ) -> bool:
        """Assemble `parts` into the object; False when the upload is no longer open.

        Raises `PartsRefused` when the store will not assemble them.
        """
        ...

    async def abort_multipart(self, key: str, multipart_id: str) -> None:
        """Discard an open multipart upload and its parts; one already gone is not an error."""
        ...

    async def read_head(self, key: str, length: int) -> StoredHead | None:
        """The object's size and first `length` bytes, in one request; None when there is none."""
        ...

    async def read_span(self, key: str, start: int, end: int) -> bytes:
        """Bytes `start` to `end` (inclusive) of a stored object; small spans only."""
        ...

    async def copy_hashed(self, source: str, target: str) -> str | None:
        """Copy `source` to `target`, the store hashing the bytes: their sha256 in hex.

        None when the store computed no checksum (the caller must hash the bytes itself).
        """
        ...

"""One request's bytes appended to a partial object on S3 (`s3_partial.py`).

The part being filled is the saved tail (in S3) followed by this request's new bytes (in
memory). A part is sent the moment it is full: the tail is read back into the front of its
buffer first (from this process's `TailCache` when it stored them, else from S3), so an upload
in whole-part requests never writes a tail at all. `save` stores what is left over as one more
tail object and waits for the parts in flight; only then are the bytes counted. Part numbers
go on from the saved state, so a part that a lost request sent under the same number is simply
replaced, and numbers never grow with resumes.

Tail objects are never rewritten in place: the saved state must stay readable until the caller
has stored the new one. Each save adds one segment, and takes into it the trailing segments
smaller than itself (a rewritten byte's segment at least doubles, so rewrites stay few), or any
while `MAX_TAIL_SEGMENTS` are named. A client's equal requests (1 MiB into 8 MiB parts) merge
nothing; tiny ones merge like a counter in base 16, never rewriting the tail on every save.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
import zlib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from upload_service.storage.budget import Reservation
from upload_service.storage.partial import PartialState
from upload_service.storage.s3 import _as_bytes
from upload_service.storage.s3_partial_state import (
    S3PartialState,
    SavedPart,
    TailSegment,
    tails_prefix,
)
from upload_service.storage.s3_parts import PartsInFlight
from upload_service.storage.s3_tail_cache import TailCache
from upload_service.storage.s3_writer import CHECKSUM_ALGORITHM, SMALL_OBJECT_BYTES

if TYPE_CHECKING:
    from upload_service.storage.budget import Held
    from upload_service.storage.s3 import S3Storage

logger = logging.getLogger(__name__)

# Tail segments a state may name before saves start merging them (a 1 MiB client fills an
# 8 MiB part in 8 saves without a merge).
MAX_TAIL_SEGMENTS = 16
DELETE_BATCH = 1000  # S3's most keys in one `delete_objects`


def crc32_base64(crc: int) -> str:
    """A CRC32 as S3 writes it in checksum headers."""
    return base64.b64encode(crc.to_bytes(4, "big")).decode("ascii")


async def read_tail_into(
    storage: S3Storage,
    segments: Iterable[TailSegment],
    buffer: bytearray,
    at: int,
    cache: TailCache,
) -> None:
    """Read the segments back into `buffer` from `at`, in order, all at once (from the cache
    when this process still has them); check each one's size and CRC32."""
    try:
        async with asyncio.TaskGroup() as group:
            position = at
            for segment in segments:
                cached = cache.get(segment.key)
                if cached is not None and _copy_cached(segment, cached, buffer, position):
                    position += segment.size
                    continue
                group.create_task(_read_segment(storage, segment, buffer, position))
                position += segment.size
    except BaseExceptionGroup as failed:
        # The first failure is the answer (a missing or changed tail); the rest were cancelled.
        raise failed.exceptions[0] from None


def _copy_cached(segment: TailSegment, cached: bytes, buffer: bytearray, start: int) -> bool:
    # A cached copy is the object's bytes by construction; checked all the same, and a copy
    # that does not match is simply not used.
    if len(cached) != segment.size or zlib.crc32(cached) != segment.crc32:
        return False
    buffer[start : start + segment.size] = cached
    return True


async def _read_segment(
    storage: S3Storage, segment: TailSegment, buffer: bytearray, start: int
) -> None:
    crc, position, end = 0, start, start + segment.size
    async for chunk in storage.read(segment.key):
        if position + len(chunk) > end:
            raise ValueError(f"tail object {segment.key} is longer than saved")
        buffer[position : position + len(chunk)] = chunk
        crc = zlib.crc32(chunk, crc)
        position += len(chunk)
    if position != end or crc != segment.crc32:
        raise ValueError(f"tail object {segment.key} differs from what was saved")


async def delete_objects(storage: S3Storage, keys: Iterable[str], cache: TailCache) -> None:
    """Delete the objects, a thousand per request; missing ones are already deleted."""
    keys = list(keys)
    cache.discard(keys)
    batch: list[str] = []
    for key in keys:
        batch.append(key)
        if len(batch) == DELETE_BATCH:
            await _delete_batch(storage, batch)
            batch = []
    if batch:
        await _delete_batch(storage, batch)


async def _delete_batch(storage: S3Storage, keys: list[str]) -> None:
    response = await storage._run(
        storage.client.delete_objects,
        Bucket=storage.bucket,
        Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
    )
    if response.get("Errors"):
        raise RuntimeError(f"could not delete {len(response['Errors'])} tail object(s)")


class S3Appender:
    """Bytes one request appends to a partial object on S3; nothing counts before `save`."""

    def __init__(
        self, storage: S3Storage, key: str, saved: S3PartialState, cache: TailCache
    ) -> None:
        self._storage = storage
        self._cache = cache
        self._key = key
        self._saved = saved
        self._part_size = storage.part_size
        # The part being filled: the saved tail not yet absorbed, then the new bytes (as the
        # chunks they came in while few, else in a whole-part buffer after the tail's room).
        self._tail = saved.tail
        self._tail_size = saved.tail_size
        self._small: list[bytes] = []
        self._buffer: bytearray | None = None
        self._filled = 0
        self._reservation = Reservation(storage.budget, storage.part_size)
        self._part_start = saved.parts_size  # where the part being filled begins in the object
        self._parts: list[SavedPart] = []
        self._absorbed: list[str] = []  # saved tail objects now inside a part or a merged segment
        self._written: list[str] = []  # tail objects this appender stored
        self._sending = PartsInFlight(storage.max_parts_in_flight, saved.next_part_number)
        self._state = "open"

    async def write(self, chunk: bytes) -> None:
        """Append bytes; waits while the buffer budget is spent or parts are sending.

        A write that fails (or is cancelled) forgets this appender's bytes, as `rollback` does.
        """
        self._ensure_open()
        if not chunk:
            return
        try:
            await self._write(chunk)
        except BaseException:
            await self._forget()
            raise

    async def save(self) -> tuple[int, PartialState]:
        """Store the bytes that do not fill a part as a tail object, wait for every part sent,
        and return the new offset and state."""
        self._ensure_open()
        self._state = "saving"
        try:
            if self._filled:
                # A full part was sent at once: what remains is always shorter than a part.
                await self._sending.guarded(self._store_tail())
            await self._sending.wait_all()
        except BaseException:
            await self._forget()
            raise
        self._state = "saved"
        state = S3PartialState(
            upload_id=self._saved.upload_id,
            parts=(*self._saved.parts, *sorted(self._parts, key=lambda part: part.number)),
            tail=self._tail,
            garbage=tuple(self._absorbed),
        )
        return state.size, state.to_json()

    async def rollback(self) -> None:
        """Forget this appender's bytes: its parts are named by no state, its tail objects go."""
        with contextlib.suppress(Exception):
            await self._forget()

    async def _write(self, chunk: bytes) -> None:
        position = self._tail_size + self._filled
        filled = self._filled + len(chunk)
        # Few new bytes that leave the part unfilled stay the chunks they came in (no copy).
        if (
            self._buffer is None
            and filled <= SMALL_OBJECT_BYTES
            and position + len(chunk) < self._part_size
        ):
            if filled > self._reservation.held:
                await self._reservation.cover(filled)
            # A caller's bytearray could change under us after `write` returns.
            self._small.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
            self._filled = filled
            return
        view = memoryview(chunk)
        # Each turn consumes at least one byte, so the loop ends.
        while len(view):
            if self._reservation.held < self._part_size:
                await self._reservation.cover(self._part_size)
            position = self._tail_size + self._filled
            taken = min(len(view), self._part_size - position)
            # No local name for the buffer: it would keep a sent part alive while the next
            # turn waits for budget (see `S3ObjectWriter._write`).
            self._whole_part_buffer()[position : position + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]
            if self._tail_size + self._filled == self._part_size:
                await self._send_part()

    def _whole_part_buffer(self) -> bytearray:
        if self._buffer is None:
            buffer = bytearray(self._part_size)
            position = self._tail_size
            for piece in self._small:
                buffer[position : position + len(piece)] = piece
                position += len(piece)
            self._small = []
            self._buffer = buffer
        return self._buffer

    async def _send_part(self) -> None:
        if self._tail:
            await read_tail_into(
                self._storage, self._tail, self._whole_part_buffer(), 0, self._cache
            )
        # The next part waits here, holding its buffer, while too many are sending.
        part_number = await self._sending.make_room()
        self._absorbed.extend(segment.key for segment in self._tail)
        # Inside a part now: only a request that fails before it saves reads them again (from S3).
        self._cache.discard(segment.key for segment in self._tail)
        self._tail, self._tail_size = (), 0
        self._part_start += self._part_size
        assert self._buffer is not None
        body, self._buffer, self._filled = self._buffer, None, 0
        held = self._reservation.take()
        self._sending.send(self._upload_one_part(part_number, body, held))

    async def _upload_one_part(self, part_number: int, body: bytearray, held: Held) -> None:
        size = len(body)
        try:
            sent = await self._storage._upload_part(
                self._key, self._saved.upload_id, part_number, body
            )
            self._parts.append(SavedPart(part_number, sent["ETag"], size, sent["ChecksumCRC32"]))
        finally:
            del body
            held.release()

    async def _store_tail(self) -> None:
        """Store the new bytes as one tail object, merged with trailing segments if due."""
        kept = list(self._tail)
        merged: list[TailSegment] = []
        size = self._filled
        # Merge a segment smaller than what it would join (so a merged byte's segment at least
        # doubles), or any segment while too many are named.
        while kept and (len(kept) >= MAX_TAIL_SEGMENTS or kept[-1].size < size):
            segment = kept.pop()
            merged.insert(0, segment)
            size += segment.size
        start = self._tail_size - (size - self._filled)  # where the new segment begins in the part
        body: bytes | bytearray
        if merged or self._buffer is not None:
            await self._reservation.cover(self._part_size)
            buffer = self._whole_part_buffer()
            await read_tail_into(self._storage, merged, buffer, start, self._cache)
            # Cut in place (no copy): the bytes before `start` and after the new ones go.
            del buffer[self._tail_size + self._filled :]
            del buffer[:start]
            body = buffer
        else:
            body = b"".join(self._small)
        self._buffer, self._small = None, []
        # Named by where it begins in the object, and unique: a lost request's object never
        # takes the name of one a saved state holds.
        offset = self._part_start + start
        segment_key = f"{tails_prefix(self._key)}{offset:016d}-{secrets.token_hex(8)}"
        crc = zlib.crc32(body)
        # Named before it is sent: a rollback deletes it whatever the outcome of the request.
        self._written.append(segment_key)
        try:
            await self._storage._run(
                self._storage.client.put_object,
                Bucket=self._storage.bucket,
                Key=segment_key,
                Body=_as_bytes(body),
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                ChecksumCRC32=crc32_base64(crc),
            )
            if isinstance(body, bytes):
                # The usual tail, joined from the chunks as they came. A merged one was cut from
                # a whole-part buffer, whose memory it may still hold: not kept.
                self._cache.put(segment_key, body)
        finally:
            del body
            self._reservation.release()
        self._absorbed.extend(segment.key for segment in merged)
        self._cache.discard(segment.key for segment in merged)
        self._tail = (*kept, TailSegment(segment_key, size, crc))
        self._tail_size = size + sum(segment.size for segment in kept)
        self._filled = 0

    async def _forget(self) -> None:
        if self._state == "forgotten":
            return
        self._state = "forgotten"
        cleanup = self._storage._keep_alive(self._cleanup())
        await asyncio.shield(cleanup)

    async def _cleanup(self) -> None:
        # A part still sending owns its budget; let every started operation end first.
        await self._sending.settle()
        self._buffer, self._small, self._filled = None, [], 0
        self._reservation.release()
        # Parts this appender sent stay in the multipart upload, named by no saved state: the
        # next part of that number replaces each one, and completion leaves out the rest.
        if self._written:
            try:
                await delete_objects(self._storage, self._written, self._cache)
            except Exception:
                logger.warning("tail objects of %s left for finish or discard", self._key)

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the appender is {self._state}")

"""A streaming write to S3: one `put_object` for a small object, else a multipart upload.

An object smaller than one part goes up in one `put_object` on commit; a larger one becomes a
multipart upload of `part_size` parts, where one part may be uploading while the next one fills.
Every part buffer is paid for in the process's `BufferBudget` before it is filled (in small steps
while it is small, so a small object holds about its own size) and paid back once it is sent,
so `write` waits (and the route stops reading its client) while the budget is spent. Any
failure, cancellation or `abort` aborts the multipart upload, so no incomplete upload is left
behind for the janitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Literal

from upload_service.storage.budget import Reservation
from upload_service.storage.s3_parts import PartsInFlight

if TYPE_CHECKING:
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from upload_service.storage.budget import Held
    from upload_service.storage.s3 import S3Storage

logger = logging.getLogger(__name__)

_MIB = 1024 * 1024
# A part up to this size is kept as the chunks it arrived in; a larger one is copied once into
# a buffer of a whole part, so a small upload never allocates (and zeroes) a whole part.
SMALL_OBJECT_BYTES = 1 * _MIB
# Each part carries its CRC32, which S3 checks on arrival and combines on completion. Without a
# declared algorithm S3 (and moto) compute a full-object checksum of their own at completion: a
# second pass over the whole object, in moto three times the cost of the composite.
CHECKSUM_ALGORITHM: Literal["CRC32"] = "CRC32"


class S3ObjectWriter:
    """A streaming write to one S3 key; nothing is visible before `commit`."""

    def __init__(self, storage: S3Storage, key: str, content_type: str) -> None:
        self._storage = storage
        self._key = key
        self._content_type = content_type
        self._part_size = storage.part_size
        # The part being filled: while it is small, the chunks as they came (no copy); once
        # it outgrows SMALL_OBJECT_BYTES, one preallocated buffer of a part, filled in place.
        # Its share of the budget grows with it.
        self._reservation = Reservation(storage.budget, storage.part_size)
        self._small: list[bytes] = []
        self._buffer: bytearray | None = None
        self._filled = 0
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []
        self._sending = PartsInFlight(storage.max_parts_in_flight)
        self._completed = False
        self._state = "open"

    @property
    def upload_id(self) -> str | None:
        """The multipart upload's id once the object outgrew one part, else None."""
        return self._upload_id

    async def write(self, chunk: bytes) -> None:
        """Append bytes; waits while the buffer budget is spent or the previous part is sending."""
        self._ensure_open()
        if not chunk:
            return
        try:
            await self._write(chunk)
        except BaseException:
            await self._discard()
            raise

    async def commit(self) -> None:
        """Upload what remains and make the object visible, complete, at once."""
        self._ensure_open()
        self._state = "committing"
        try:
            if self._upload_id is None:
                body, held = self._detach_part()
                await self._sending.guarded(self._put_object(body, held))
            else:
                if self._filled:
                    await self._send_part()
                await self._sending.wait_all()
                await self._sending.guarded(self._complete())
        except BaseException:
            await self._discard()
            raise
        self._state = "committed"

    async def abort(self) -> None:
        """Discard everything written, aborting the multipart upload; never raises."""
        with contextlib.suppress(Exception):
            await self._discard()

    async def _write(self, chunk: bytes) -> None:
        filled = self._filled + len(chunk)
        if self._buffer is None and filled <= SMALL_OBJECT_BYTES:
            if filled > self._reservation.held:
                await self._reservation.cover(filled)
            # A caller's bytearray could change under us after `write` returns.
            self._small.append(chunk if isinstance(chunk, bytes) else bytes(chunk))
            self._filled += len(chunk)
            return
        view = memoryview(chunk)
        # Each turn consumes at least one byte, so the loop ends.
        while len(view):
            if self._filled == self._part_size:
                # More bytes than one part: the object becomes (or stays) a multipart upload.
                await self._send_part()
            if self._reservation.held < self._part_size:
                await self._reservation.cover(self._part_size)
            taken = min(len(view), self._part_size - self._filled)
            # No local name for the buffer: a local would keep a part that the next turn sends
            # alive while this frame waits for budget, 8 MiB outside the budget per upload.
            self._whole_part_buffer()[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]

    def _whole_part_buffer(self) -> bytearray:
        if self._buffer is None:
            buffer = bytearray(self._part_size)
            offset = 0
            for piece in self._small:
                buffer[offset : offset + len(piece)] = piece
                offset += len(piece)
            self._small = []
            self._buffer = buffer
        return self._buffer

    def _detach_part(self) -> tuple[bytes | bytearray, Held]:
        """Take the part being filled, and with it the budget it holds."""
        body: bytes | bytearray
        if self._buffer is not None:
            body = self._buffer
            # Truncating in place: the unused tail is given back without copying the bytes.
            del body[self._filled :]
        else:
            body = b"".join(self._small)
        self._buffer, self._small, self._filled = None, [], 0
        return body, self._reservation.take()

    async def _send_part(self) -> None:
        if self._upload_id is None:
            await self._sending.guarded(self._create_multipart_upload())
        # The next part waits here, holding its full buffer, while too many are sending. Every
        # buffer came from the shared budget, so memory stays bounded however many run.
        part_number = await self._sending.make_room()
        body, held = self._detach_part()
        self._sending.send(self._upload_one_part(part_number, body, held))

    async def _create_multipart_upload(self) -> None:
        response = await self._storage._run(
            self._storage.client.create_multipart_upload,
            Bucket=self._storage.bucket,
            Key=self._key,
            ContentType=self._content_type,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        # Recorded by this task itself, so that even a cancelled caller's cleanup can abort it.
        self._upload_id = response["UploadId"]

    async def _upload_one_part(self, part_number: int, body: bytes | bytearray, held: Held) -> None:
        assert self._upload_id is not None
        try:
            part = await self._storage._upload_part(self._key, self._upload_id, part_number, body)
            self._parts.append(part)
        finally:
            del body
            held.release()

    async def _put_object(self, body: bytes | bytearray, held: Held) -> None:
        try:
            await self._storage._put_object(self._key, self._content_type, body)
            self._completed = True
        finally:
            del body
            held.release()

    async def _complete(self) -> None:
        assert self._upload_id is not None
        parts = sorted(self._parts, key=lambda part: part["PartNumber"])
        await self._storage._run(
            self._storage.client.complete_multipart_upload,
            Bucket=self._storage.bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._completed = True

    async def _discard(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        cleanup = self._storage._keep_alive(self._cleanup())
        await asyncio.shield(cleanup)

    async def _cleanup(self) -> None:
        # First let every operation already started finish: a part still sending owns its
        # budget, and an abort racing an upload could leave that part behind.
        await self._sending.settle()
        _, held = self._detach_part()
        held.release()
        if self._upload_id is not None and not self._completed:
            try:
                await self._storage._run(
                    self._storage.client.abort_multipart_upload,
                    Bucket=self._storage.bucket,
                    Key=self._key,
                    UploadId=self._upload_id,
                )
            except Exception:
                logger.warning(
                    "could not abort multipart upload %s; the janitor will", self._upload_id
                )
        if self._completed:
            # A commit whose caller was cancelled went through anyway: undo it.
            try:
                await self._storage.delete(self._key)
            except Exception:
                logger.warning("could not delete the object of an aborted write")

    def _ensure_open(self) -> None:
        if self._state != "open":
            raise RuntimeError(f"the writer is {self._state}")

"""Partial objects on S3 (`partial.py`): a multipart upload on the final key, and a tail.

`begin` starts the multipart upload on the key the object will have; appenders
(`s3_appender.py`) send whole parts to it and keep the bytes that do not fill a part as tail
objects under `tus-tails/{key}/`; `finish` sends the tail as the last part (the one part S3
lets be short) and completes the upload; `discard` aborts it. The state that ties these
together (`s3_partial_state.py`) is the caller's to keep, so any process can take over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from upload_service.storage.budget import Reservation
from upload_service.storage.partial import PartialState
from upload_service.storage.s3 import _NOT_FOUND_CODES, _code
from upload_service.storage.s3_appender import S3Appender, delete_objects, read_tail_into
from upload_service.storage.s3_partial_state import S3PartialState, SavedPart, tails_prefix
from upload_service.storage.s3_tail_cache import TailCache
from upload_service.storage.s3_writer import CHECKSUM_ALGORITHM

if TYPE_CHECKING:
    from upload_service.storage.s3 import S3Storage

logger = logging.getLogger(__name__)

_GONE_CODES = frozenset({"NoSuchUpload", *_NOT_FOUND_CODES})
_EMPTY_CONTENT_TYPE = "application/octet-stream"


def _is_gone(exc: BaseException) -> bool:
    return isinstance(exc, FileNotFoundError) or (
        isinstance(exc, ClientError) and _code(exc) in _GONE_CODES
    )


class S3PartialObjects:
    """Partial objects as multipart uploads on their final keys, with their tails beside."""

    def __init__(self, storage: S3Storage) -> None:
        self._storage = storage
        self.tails = TailCache()

    async def begin(self, key: str) -> PartialState:
        """Start the multipart upload on `key`; its id is the whole of the first state."""
        response = await self._storage._run(
            self._storage.client.create_multipart_upload,
            Bucket=self._storage.bucket,
            Key=key,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        return S3PartialState(upload_id=response["UploadId"]).to_json()

    async def append(self, key: str, state: PartialState, offset: int) -> S3Appender:
        """An appender at `offset`, which must be the offset `state` was saved with."""
        saved = S3PartialState.from_json(state)
        if offset != saved.size:
            raise ValueError(f"offset {offset} is not the saved state's {saved.size}")
        if saved.tail_size >= self._storage.part_size:
            # Only a process with larger parts could have saved it: every process must agree.
            raise ValueError("the saved tail is longer than this storage's part size")
        if saved.garbage:
            # The caller stored the state that no longer needs them: nobody reads them again.
            self._storage._keep_alive(self._delete_quietly(list(saved.garbage)))
        return S3Appender(self._storage, key, saved, self.tails)

    async def finish(self, key: str, state: PartialState) -> None:
        """Send the tail as the last part and complete the upload; idempotent once done.

        Raises `FileNotFoundError` when neither the partial object nor the object is there.
        """
        saved = S3PartialState.from_json(state)
        try:
            if saved.size == 0:
                await self._store_empty(key, saved)
            else:
                parts = list(saved.parts)
                if saved.tail:
                    parts.append(await self._send_tail(key, saved))
                await self._storage._run(
                    self._storage.client.complete_multipart_upload,
                    Bucket=self._storage.bucket,
                    Key=key,
                    UploadId=saved.upload_id,
                    MultipartUpload={"Parts": [part.completed() for part in parts]},
                )
        except Exception as exc:
            if not _is_gone(exc):
                raise
            # A finish repeated after a crash finds the upload completed and its tail gone.
            if not await self._holds(key, saved.size):
                raise FileNotFoundError(f"no partial object nor object under {key!r}") from exc
        try:
            await self._remove_tails(key)
        except Exception:
            # The object is whole: a leftover tail only costs space until a lifecycle rule.
            logger.warning("could not delete the tail objects of %s", key)

    async def discard(self, key: str, state: PartialState) -> None:
        """Abort the multipart upload and delete every tail object; what is gone stays gone."""
        saved = S3PartialState.from_json(state)
        await self._abort(key, saved.upload_id)
        await self._remove_tails(key)

    async def _send_tail(self, key: str, saved: S3PartialState) -> SavedPart:
        """Read the tail back and send it as the last part, which S3 lets be of any size."""
        size = saved.tail_size
        reservation = Reservation(self._storage.budget, self._storage.part_size)
        try:
            await reservation.cover(size)
            body = bytearray(size)
            await read_tail_into(self._storage, saved.tail, body, 0, self.tails)
            number = saved.next_part_number
            sent = await self._storage._upload_part(key, saved.upload_id, number, body)
            del body
        finally:
            reservation.release()
        return SavedPart(number, sent["ETag"], size, sent["ChecksumCRC32"])

    async def _store_empty(self, key: str, saved: S3PartialState) -> None:
        # S3 completes no multipart upload without a part: an empty object is one plain put.
        await self._storage._put_object(key, _EMPTY_CONTENT_TYPE, b"")
        await self._abort(key, saved.upload_id)

    async def _abort(self, key: str, upload_id: str) -> None:
        try:
            await self._storage._run(
                self._storage.client.abort_multipart_upload,
                Bucket=self._storage.bucket,
                Key=key,
                UploadId=upload_id,
            )
        except ClientError as exc:
            if not _is_gone(exc):
                raise

    async def _holds(self, key: str, size: int) -> bool:
        """Whether `key` holds an object of `size` bytes (the upload completed earlier)."""
        try:
            head = await self._storage._run(
                self._storage.client.head_object, Bucket=self._storage.bucket, Key=key
            )
        except ClientError as exc:
            if _is_gone(exc):
                return False
            raise
        return head["ContentLength"] == size

    async def _remove_tails(self, key: str) -> None:
        """Delete every tail object of `key`, those of requests that never saved included."""
        keys = [stored.key async for stored in self._storage.list_objects(tails_prefix(key))]
        await delete_objects(self._storage, keys, self.tails)

    async def _delete_quietly(self, keys: list[str]) -> None:
        try:
            await delete_objects(self._storage, keys, self.tails)
        except Exception:
            logger.warning("could not delete %d absorbed tail object(s)", len(keys))

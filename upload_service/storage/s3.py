"""S3 storage through boto3, with every blocking call on a dedicated thread pool.

Writes stream: an object smaller than one part goes up in one `put_object` on commit; a larger
one becomes a multipart upload of `part_size` parts, where one part may be uploading while the
next one fills. Every part buffer is paid for in the process's `BufferBudget` before it is
filled and paid back once it is sent, so `write` waits (and the route stops reading its client)
while the budget is spent. Any failure, cancellation or `abort` aborts the multipart upload, so
no incomplete upload is left behind for the janitor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange
from upload_service.storage.budget import BufferBudget

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

    from upload_service.config import Settings

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_MIB = 1024 * 1024
PART_SIZE = 8 * _MIB
MIN_PART_SIZE = 5 * _MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * _MIB
MAX_PARTS = 10_000
READ_CHUNK_BYTES = 256 * 1024
# A part up to this size is kept as the chunks it arrived in; a larger one is copied once into
# a buffer of a whole part, so a small upload never allocates (and zeroes) a whole part.
SMALL_OBJECT_BYTES = 1 * _MIB
_THROTTLING_CODES = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})
_NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _is_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        return True
    # Retries are spent by the time these reach us: the service is down or shedding load.
    return isinstance(exc, ClientError) and (_status(exc) >= 500 or _code(exc) in _THROTTLING_CODES)


def _as_bytes(body: bytes | bytearray) -> bytes:
    # botocore sends a bytearray as it is, like bytes (no copy); only the stubs say bytes.
    return cast(bytes, body)


class S3ObjectWriter:
    """A streaming write to one S3 key; nothing is visible before `commit`."""

    def __init__(self, storage: S3Storage, key: str, content_type: str) -> None:
        self._storage = storage
        self._key = key
        self._content_type = content_type
        self._part_size = storage.part_size
        self._budget = storage.budget
        # The part being filled: while it is small, the chunks as they came (no copy); once
        # it outgrows SMALL_OBJECT_BYTES, one preallocated buffer of a part, filled in place.
        self._holding_budget = False
        self._small: list[bytes] = []
        self._buffer: bytearray | None = None
        self._filled = 0
        self._upload_id: str | None = None
        self._next_part_number = 1
        self._parts: list[CompletedPartTypeDef] = []
        # Parts being sent, oldest first; at most `max_parts_in_flight` at once.
        self._in_flight: collections.deque[asyncio.Future[None]] = collections.deque()
        # Operations whose thread may outlive a cancelled caller; cleanup waits for them.
        self._pending: set[asyncio.Future[Any]] = set()
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
                await self._guarded(self._put_object(body, held))
            else:
                if self._filled:
                    await self._send_part()
                await self._wait_in_flight()
                await self._guarded(self._complete())
        except BaseException:
            await self._discard()
            raise
        self._state = "committed"

    async def abort(self) -> None:
        """Discard everything written, aborting the multipart upload; never raises."""
        with contextlib.suppress(Exception):
            await self._discard()

    async def _write(self, chunk: bytes) -> None:
        if self._buffer is None and self._filled + len(chunk) <= SMALL_OBJECT_BYTES:
            if not self._holding_budget:
                await self._take_budget()
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
            if not self._holding_budget:
                await self._take_budget()
            buffer = self._whole_part_buffer()
            taken = min(len(view), self._part_size - self._filled)
            buffer[self._filled : self._filled + taken] = view[:taken]
            self._filled += taken
            view = view[taken:]

    async def _take_budget(self) -> None:
        await self._budget.acquire(self._part_size)
        self._holding_budget = True

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

    def _detach_part(self) -> tuple[bytes | bytearray, bool]:
        """Take the part being filled, and with it the budget it holds."""
        body: bytes | bytearray
        if self._buffer is not None:
            body = self._buffer
            # Truncating in place: the unused tail is given back without copying the bytes.
            del body[self._filled :]
        else:
            body = b"".join(self._small)
        held = self._holding_budget
        self._buffer, self._small, self._filled, self._holding_budget = None, [], 0, False
        return body, held

    async def _send_part(self) -> None:
        if self._upload_id is None:
            await self._guarded(self._create_multipart_upload())
        # A bounded number of parts in flight: the next one waits here, holding its full buffer.
        # Every buffer came from the shared budget, so memory stays bounded however many run.
        while len(self._in_flight) >= self._storage.max_parts_in_flight:
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft()
        part_number = self._next_part_number
        if part_number > MAX_PARTS:
            raise ValueError(f"an object may have at most {MAX_PARTS} parts")
        self._next_part_number += 1
        body, held = self._detach_part()
        self._in_flight.append(self._track(self._upload_one_part(part_number, body, held)))

    async def _wait_in_flight(self) -> None:
        while self._in_flight:
            await asyncio.shield(self._in_flight[0])
            self._in_flight.popleft()

    async def _create_multipart_upload(self) -> None:
        response = await self._storage._run(
            self._storage.client.create_multipart_upload,
            Bucket=self._storage.bucket,
            Key=self._key,
            ContentType=self._content_type,
        )
        # Recorded by this task itself, so that even a cancelled caller's cleanup can abort it.
        self._upload_id = response["UploadId"]

    async def _upload_one_part(
        self, part_number: int, body: bytes | bytearray, held_budget: bool
    ) -> None:
        assert self._upload_id is not None
        try:
            etag = await self._storage._upload_part(self._key, self._upload_id, part_number, body)
            self._parts.append({"ETag": etag, "PartNumber": part_number})
        finally:
            del body
            if held_budget:
                self._budget.release(self._part_size)

    async def _put_object(self, body: bytes | bytearray, held_budget: bool) -> None:
        try:
            await self._storage._put_object(self._key, self._content_type, body)
            self._completed = True
        finally:
            del body
            if held_budget:
                self._budget.release(self._part_size)

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

    def _track(self, coroutine: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        task = asyncio.ensure_future(coroutine)
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)
        return task

    async def _guarded(self, coroutine: Coroutine[Any, Any, T]) -> T:
        # Shielded: if our caller is cancelled, the operation still ends (its thread would
        # anyway) and cleanup sees its outcome instead of guessing.
        return await asyncio.shield(self._track(coroutine))

    async def _discard(self) -> None:
        if self._state in ("committed", "aborted"):
            return
        self._state = "aborted"
        cleanup = self._storage._keep_alive(self._cleanup())
        await asyncio.shield(cleanup)

    async def _cleanup(self) -> None:
        # First let every operation already started finish: a part still sending owns its
        # budget, and an abort racing an upload could leave that part behind.
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
        _, held = self._detach_part()
        if held:
            self._budget.release(self._part_size)
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


class S3Storage:
    """Objects in one S3 bucket; every boto3 call runs on the storage's own thread pool."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None,
        region: str | None,
        budget: BufferBudget,
        part_size: int = PART_SIZE,
        *,
        max_parts_in_flight: int = 2,
        max_pool_connections: int = 32,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
    ) -> None:
        if not MIN_PART_SIZE <= part_size <= MAX_PART_SIZE:
            raise ValueError(f"part_size must be between {MIN_PART_SIZE} and {MAX_PART_SIZE}")
        if part_size > budget.capacity:
            raise ValueError("part_size is larger than the whole buffer budget")
        self.bucket = bucket
        self.budget = budget
        self.part_size = part_size
        # Two parts sending while a third fills keeps a lone upload near the endpoint's speed.
        self.max_parts_in_flight = max_parts_in_flight
        # Custom endpoints (MinIO, Ceph, moto) rarely resolve virtual-hosted bucket names.
        s3_options: _S3Dict | None = {"addressing_style": "path"} if endpoint_url else None
        session = boto3.session.Session()
        self.client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"mode": "standard", "max_attempts": 3},
                max_pool_connections=max_pool_connections,
                connect_timeout=connect_timeout_s,
                read_timeout=read_timeout_s,
                s3=s3_options,
            ),
        )
        # Readiness must answer within its own short timeout: one attempt, short timeouts.
        self._probe_client: S3Client = session.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"mode": "standard", "max_attempts": 1},
                max_pool_connections=2,
                connect_timeout=2.0,
                read_timeout=2.0,
                s3=s3_options,
            ),
        )
        # As many threads as pooled connections: a thread never waits for a connection.
        self._executor = ThreadPoolExecutor(
            max_workers=max_pool_connections, thread_name_prefix="s3-storage"
        )
        # The probe has threads of its own so that it never queues behind busy uploads.
        self._probe_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="s3-probe")
        self._background: set[asyncio.Future[None]] = set()
        self._closed = False

    @classmethod
    def from_settings(cls, settings: Settings, budget: BufferBudget) -> S3Storage:
        """Build the storage from `S3_BUCKET`, `S3_ENDPOINT_URL` and `S3_REGION`."""
        if not settings.s3_bucket:
            raise ValueError("S3_BUCKET is required for S3 storage")
        return cls(settings.s3_bucket, settings.s3_endpoint_url, settings.s3_region, budget)

    async def open_writer(self, key: str, content_type: str) -> S3ObjectWriter:
        """Start writing a new object under `key`; nothing is sent before a part is full."""
        if self._closed:
            raise RuntimeError("the storage is closed")
        return S3ObjectWriter(self, key, content_type)

    async def read(
        self, key: str, byte_range: ByteRange | None = None
    ) -> AsyncGenerator[bytes, None]:
        """Stream the object's bytes in chunks, or only `byte_range`; a missing key raises."""
        try:
            if byte_range is None:
                response = await self._run(self.client.get_object, Bucket=self.bucket, Key=key)
            else:
                response = await self._run(
                    self.client.get_object,
                    Bucket=self.bucket,
                    Key=key,
                    Range=f"bytes={byte_range.start}-{byte_range.end}",
                )
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                raise FileNotFoundError(f"no object under key {key!r}") from None
            raise
        body = response["Body"]
        remaining = response["ContentLength"]
        try:
            # Bounded by the length S3 announced; an early empty read ends it too.
            while remaining > 0:
                chunk = await self._run(body.read, min(READ_CHUNK_BYTES, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        finally:
            # Closing a half-read body drops its connection rather than draining it.
            body.close()

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under `key`."""
        try:
            await self._run(self.client.head_object, Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND_CODES:
                return False
            raise
        return True

    async def delete(self, key: str) -> None:
        """Remove the object; S3 treats a missing object as already deleted."""
        await self._run(self.client.delete_object, Bucket=self.bucket, Key=key)

    async def check(self) -> None:
        """Raise `StorageUnavailable` unless the bucket answers a HEAD request."""
        try:
            await self._run_on(
                self._probe_executor, self._probe_client.head_bucket, Bucket=self.bucket
            )
        except StorageUnavailable:
            raise
        except ClientError as exc:
            raise StorageUnavailable(
                f"bucket is not accessible (HTTP {_status(exc) or _code(exc)})"
            ) from exc
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise StorageUnavailable("storage credentials are missing") from exc
        except BotoCoreError as exc:
            raise StorageUnavailable(f"storage check failed ({type(exc).__name__})") from exc

    async def abort_incomplete_uploads(self, older_than: timedelta, prefix: str = "") -> int:
        """Abort multipart uploads begun over `older_than` ago (for the janitor); count them."""
        cutoff = datetime.now(UTC) - older_than

        def sweep() -> int:
            aborted = 0
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    initiated = upload.get("Initiated")
                    if initiated is None or initiated >= cutoff:
                        continue
                    self.client.abort_multipart_upload(
                        Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                    )
                    aborted += 1
            return aborted

        return await self._run(sweep)

    async def aclose(self) -> None:
        """Let pending cleanups finish, then stop the threads and close the connections."""
        if self._closed:
            return
        self._closed = True
        if self._background:
            await asyncio.wait(self._background, timeout=30)
        loop = asyncio.get_running_loop()
        for executor in (self._executor, self._probe_executor):
            await loop.run_in_executor(
                None, functools.partial(executor.shutdown, wait=True, cancel_futures=True)
            )
        self.client.close()
        self._probe_client.close()

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, body: bytes | bytearray
    ) -> str:
        """Send one part and return its ETag (a seam tests override to inject failures)."""
        # The pool's work item keeps its arguments alive for a moment after the result is
        # reported, long enough for the next part buffer to be allocated beside this one: the
        # buffer travels in a list the thread empties, so it is freed before we hear back.
        handover = [body]
        del body

        def send() -> str:
            return self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=_as_bytes(handover.pop()),
            )["ETag"]

        return await self._run(send)

    async def _put_object(self, key: str, content_type: str, body: bytes | bytearray) -> None:
        """Send a whole object in one request."""
        handover = [body]  # freed by the thread itself, as in `_upload_part`
        del body

        def send() -> None:
            self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=_as_bytes(handover.pop()),
                ContentType=content_type,
            )

        await self._run(send)

    async def _run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a blocking boto3 call on the pool, mapping an unreachable S3 to the domain error."""
        return await self._run_on(self._executor, func, *args, **kwargs)

    async def _run_on(
        self, executor: ThreadPoolExecutor, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a blocking boto3 call on `executor`, mapping an unreachable S3 to the domain one."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(executor, functools.partial(func, *args, **kwargs))
        except (BotoCoreError, ClientError) as exc:
            if _is_unavailable(exc):
                raise StorageUnavailable("storage endpoint is unreachable") from exc
            raise

    def _keep_alive(self, coroutine: Awaitable[None]) -> asyncio.Future[None]:
        # A cleanup outlives a cancelled caller; holding it here keeps it from being
        # garbage-collected and lets `aclose` wait for it.
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

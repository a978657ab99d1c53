"""S3 storage through boto3, with every blocking call on a dedicated thread pool.

Writes stream through `S3ObjectWriter` (`s3_writer.py`): one `put_object` for a small object, a
multipart upload of bounded part buffers for a larger one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Container
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar, cast

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
from upload_service.storage.base import ByteRange, StoredObject
from upload_service.storage.budget import BufferBudget
from upload_service.storage.s3_writer import CHECKSUM_ALGORITHM, S3ObjectWriter

if TYPE_CHECKING:
    from botocore.config import _S3Dict
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef, ListObjectsV2OutputTypeDef

    from upload_service.config import Settings
    from upload_service.storage.s3_partial import S3PartialObjects

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

_MIB = 1024 * 1024
PART_SIZE = 8 * _MIB
MIN_PART_SIZE = 5 * _MIB  # S3's floor for every part but the last
MAX_PART_SIZE = 5 * 1024 * _MIB
READ_CHUNK_BYTES = 256 * 1024
LIST_PAGE_SIZE = 1000  # S3's own maximum
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
        list_page_size: int = LIST_PAGE_SIZE,
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
        self.list_page_size = list_page_size
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
        self._partial_objects: S3PartialObjects | None = None
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

    @property
    def partial_objects(self) -> S3PartialObjects:
        """Resumable uploads' partial objects: multipart uploads on their final keys."""
        if self._partial_objects is None:
            # Imported here: the partial objects are built on this module, not the reverse.
            from upload_service.storage.s3_partial import S3PartialObjects

            self._partial_objects = S3PartialObjects(self)
        return self._partial_objects

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

    async def list_objects(self, prefix: str) -> AsyncGenerator[StoredObject, None]:
        """Stream the objects whose key starts with `prefix`, a `list_objects_v2` page at a time."""
        # Making the iterator sends nothing: each page is fetched by `next`, on the pool.
        pages = iter(
            self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket,
                Prefix=prefix,
                PaginationConfig={"PageSize": self.list_page_size},
            )
        )

        def next_page() -> ListObjectsV2OutputTypeDef | None:
            return next(pages, None)

        # Ends with the listing (botocore stops on a repeated continuation token, too); one page
        # is in memory at a time.
        while (page := await self._run(next_page)) is not None:
            for item in page.get("Contents", []):
                modified_at = item["LastModified"].astimezone(UTC)
                yield StoredObject(item["Key"], item["Size"], modified_at)

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

    async def abort_incomplete_uploads(
        self, older_than: timedelta, prefix: str = "", keep: Container[str] = frozenset()
    ) -> int:
        """Abort multipart uploads idle for over `older_than` (for the janitor); count them.

        Idle since the latest part arrived, or since it began when no part did: a slow upload
        still sending parts is alive however long ago it started. Uploads on a key in `keep`
        (live resumable uploads, which may rest for hours between requests) are left alone.
        """
        cutoff = datetime.now(UTC) - older_than

        def last_activity(key: str, upload_id: str, initiated: datetime) -> datetime:
            latest = initiated
            paginator = self.client.get_paginator("list_parts")
            for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
                for part in page.get("Parts", []):
                    latest = max(latest, part.get("LastModified", latest))
            return latest

        def sweep() -> int:
            aborted = 0
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                for upload in page.get("Uploads", []):
                    initiated = upload.get("Initiated")
                    if initiated is None or initiated >= cutoff or upload["Key"] in keep:
                        continue
                    # Only uploads that began long ago pay for the listing of their parts.
                    if last_activity(upload["Key"], upload["UploadId"], initiated) >= cutoff:
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
    ) -> CompletedPartTypeDef:
        """Send one part; what completing the upload must name it by (a seam for failure tests)."""
        # The pool's work item keeps its arguments alive for a moment after the result is
        # reported, long enough for the next part buffer to be allocated beside this one: the
        # buffer travels in a list the thread empties, so it is freed before we hear back.
        handover = [body]
        del body

        def send() -> CompletedPartTypeDef:
            sent = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=part_number,
                Body=_as_bytes(handover.pop()),
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
            return {
                "ETag": sent["ETag"],
                "PartNumber": part_number,
                "ChecksumCRC32": sent["ChecksumCRC32"],
            }

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

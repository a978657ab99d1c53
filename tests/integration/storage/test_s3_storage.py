"""S3 storage against a real S3 endpoint over HTTP (moto's server in a subprocess)."""

from __future__ import annotations

import asyncio
import base64
import random
import threading
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.s3 import TEST_REGION, free_port
from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange, ObjectWriter, Storage
from upload_service.storage.budget import STEP_BYTES, STEPPED_UP_TO, BufferBudget
from upload_service.storage.s3 import MIN_PART_SIZE, READ_CHUNK_BYTES, S3Storage
from upload_service.storage.s3_writer import S3ObjectWriter

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
PART = MIN_PART_SIZE  # the smallest part S3 takes keeps the tests quick
KEY = "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf"


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes that no compression or deduplication could flatter."""
    return random.Random(seed).randbytes(size)


def chunked(data: bytes, size: int) -> Iterable[bytes]:
    """The data cut into pieces of `size` bytes, as a client's body would arrive."""
    return (data[offset : offset + size] for offset in range(0, len(data), size))


async def write_all(writer: ObjectWriter, data: bytes, chunk_size: int = 64 * 1024) -> None:
    """Feed `data` to the writer chunk by chunk."""
    for chunk in chunked(data, chunk_size):
        await writer.write(chunk)


async def write_and_commit(writer: ObjectWriter, data: bytes) -> None:
    """Feed `data` to the writer, then commit it."""
    await write_all(writer, data)
    await writer.commit()


async def read_all(storage: Storage, key: str, byte_range: ByteRange | None = None) -> bytes:
    """All the bytes `read` streams."""
    return b"".join([chunk async for chunk in storage.read(key, byte_range)])


def incomplete_uploads(s3_client: S3Client, bucket: str) -> list[str]:
    """The keys of the bucket's multipart uploads that were neither completed nor aborted."""
    uploads = s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [upload["Key"] for upload in uploads]


def object_keys(s3_client: S3Client, bucket: str) -> list[str]:
    """The keys of the bucket's visible objects."""
    return [item["Key"] for item in s3_client.list_objects_v2(Bucket=bucket).get("Contents", [])]


@pytest.fixture
async def small_part_storage(
    moto_server: str, s3_bucket: str, buffer_budget: BufferBudget
) -> AsyncIterator[S3Storage]:
    """An `S3Storage` with 5 MiB parts, S3's minimum."""
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, buffer_budget, part_size=PART)
    yield storage
    await storage.aclose()


class FailingPartStorage(S3Storage):
    """An S3Storage whose upload of one given part fails as a dropped connection would."""

    def __init__(self, *args: object, failing_part: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.failing_part = failing_part

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, body: bytes | bytearray
    ) -> CompletedPartTypeDef:
        if part_number == self.failing_part:
            raise StorageUnavailable("injected failure")
        return await super()._upload_part(key, upload_id, part_number, body)


class GatedPartStorage(S3Storage):
    """An S3Storage whose part uploads wait for the test to open a gate, and are counted."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.gate = asyncio.Event()
        self.started: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, body: bytes | bytearray
    ) -> CompletedPartTypeDef:
        self.started.append(part_number)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await self.gate.wait()
            return await super()._upload_part(key, upload_id, part_number, body)
        finally:
            self.in_flight -= 1


# --- writing -------------------------------------------------------------------------------


async def test_small_object_goes_up_in_one_put_and_round_trips(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(300 * 1024)

    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, data)
    await writer.commit()

    assert isinstance(writer, S3ObjectWriter)
    assert writer.upload_id is None
    head = s3_client.head_object(Bucket=s3_bucket, Key=KEY)
    assert head["ContentType"] == "application/pdf"
    assert "-" not in head["ETag"]  # a multipart ETag ends in -<parts>
    assert await read_all(s3_storage, KEY) == data


async def test_object_of_exactly_one_part_goes_up_in_one_put(
    small_part_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(PART)

    writer = await small_part_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, data)
    await writer.commit()

    assert "-" not in s3_client.head_object(Bucket=s3_bucket, Key=KEY)["ETag"]
    assert await read_all(small_part_storage, KEY) == data


async def test_multipart_upload_of_three_parts_round_trips(
    small_part_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(2 * PART + 123_457)

    writer = await small_part_storage.open_writer(KEY, "image/png")
    await write_all(writer, data, chunk_size=65_537)  # chunks that straddle part boundaries
    await writer.commit()

    head = s3_client.head_object(Bucket=s3_bucket, Key=KEY, ChecksumMode="ENABLED")
    assert head["ETag"].strip('"').endswith("-3")
    assert head["ContentType"] == "image/png"
    assert head["ContentLength"] == len(data)
    # S3 checked each part's CRC32 and keeps their composite: the object is verified end to end.
    part_crcs = [
        zlib.crc32(data[start : start + PART]).to_bytes(4, "big")
        for start in range(0, len(data), PART)
    ]
    composite = zlib.crc32(b"".join(part_crcs)).to_bytes(4, "big")
    # S3 writes it as `<base64>-3`; moto leaves out the part count.
    assert head["ChecksumCRC32"].removesuffix("-3") == base64.b64encode(composite).decode()
    assert await read_all(small_part_storage, KEY) == data
    assert incomplete_uploads(s3_client, s3_bucket) == []


async def test_default_parts_are_eight_mebibytes(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(8 * MIB + 1)

    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, data, chunk_size=MIB)
    await writer.commit()

    first_part = s3_client.head_object(Bucket=s3_bucket, Key=KEY, PartNumber=1)
    assert first_part["ContentLength"] == 8 * MIB
    assert s3_client.head_object(Bucket=s3_bucket, Key=KEY)["ETag"].strip('"').endswith("-2")


async def test_one_write_larger_than_several_parts_is_split_into_parts(
    small_part_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(2 * PART + 10)

    writer = await small_part_storage.open_writer(KEY, "application/pdf")
    await writer.write(data)
    await writer.commit()

    assert s3_client.head_object(Bucket=s3_bucket, Key=KEY)["ETag"].strip('"').endswith("-3")
    assert await read_all(small_part_storage, KEY) == data


async def test_empty_object_can_be_stored(s3_storage: S3Storage) -> None:
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.commit()

    assert await s3_storage.exists(KEY)
    assert await read_all(s3_storage, KEY) == b""


async def test_nothing_visible_before_commit(
    small_part_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    writer = await small_part_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, payload(PART + PART // 2))

    assert not await small_part_storage.exists(KEY)
    assert object_keys(s3_client, s3_bucket) == []
    assert incomplete_uploads(s3_client, s3_bucket) == [KEY]  # in progress, not an object

    await writer.commit()

    assert await small_part_storage.exists(KEY)
    assert incomplete_uploads(s3_client, s3_bucket) == []


async def test_writer_refuses_use_after_commit(s3_storage: S3Storage) -> None:
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(b"%PDF-1.7")
    await writer.commit()

    with pytest.raises(RuntimeError, match="committed"):
        await writer.write(b"more")
    with pytest.raises(RuntimeError, match="committed"):
        await writer.commit()
    await writer.abort()  # a no-op that does not undo the commit
    assert await s3_storage.exists(KEY)


# --- aborting and failing -------------------------------------------------------------------


async def test_abort_removes_multipart_upload(
    small_part_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    writer = await small_part_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, payload(2 * PART + 1))
    assert incomplete_uploads(s3_client, s3_bucket) == [KEY]

    await writer.abort()

    assert incomplete_uploads(s3_client, s3_bucket) == []
    assert object_keys(s3_client, s3_bucket) == []
    assert small_part_storage.budget.available == small_part_storage.budget.capacity


async def test_a_small_write_holds_a_step_of_the_budget_not_a_whole_part(
    s3_storage: S3Storage,
) -> None:
    budget = s3_storage.budget
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(b"%PDF-1.7 ten")

    assert budget.capacity - budget.available == STEP_BYTES
    await writer.commit()
    assert budget.available == budget.capacity


async def test_a_write_holds_a_whole_part_once_it_outgrows_its_steps(
    small_part_storage: S3Storage,
) -> None:
    budget = small_part_storage.budget
    writer = await small_part_storage.open_writer(KEY, "application/pdf")
    await write_all(writer, payload(STEPPED_UP_TO))
    assert budget.capacity - budget.available == STEPPED_UP_TO

    await writer.write(b"one more")

    assert budget.capacity - budget.available == PART
    await writer.abort()
    assert budget.available == budget.capacity


async def test_abort_of_a_small_write_leaves_nothing_and_returns_the_budget(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(b"%PDF-1.7 partial")
    assert s3_storage.budget.available < s3_storage.budget.capacity

    await writer.abort()
    await writer.abort()  # twice is harmless

    assert object_keys(s3_client, s3_bucket) == []
    assert s3_storage.budget.available == s3_storage.budget.capacity


async def test_failure_on_third_part_leaves_no_incomplete_multipart_upload(
    moto_server: str, s3_bucket: str, s3_client: S3Client, buffer_budget: BufferBudget
) -> None:
    storage = FailingPartStorage(
        s3_bucket, moto_server, TEST_REGION, buffer_budget, PART, failing_part=3
    )
    try:
        writer = await storage.open_writer(KEY, "application/pdf")
        with pytest.raises(StorageUnavailable, match="injected"):
            await write_and_commit(writer, payload(4 * PART))

        assert incomplete_uploads(s3_client, s3_bucket) == []
        assert object_keys(s3_client, s3_bucket) == []
        assert buffer_budget.available == buffer_budget.capacity
        await writer.abort()  # the caller's usual cleanup still never raises
    finally:
        await storage.aclose()


async def test_failure_on_the_last_part_surfaces_at_commit_and_leaves_nothing(
    moto_server: str, s3_bucket: str, s3_client: S3Client, buffer_budget: BufferBudget
) -> None:
    storage = FailingPartStorage(
        s3_bucket, moto_server, TEST_REGION, buffer_budget, PART, failing_part=2
    )
    try:
        writer = await storage.open_writer(KEY, "application/pdf")
        await write_all(writer, payload(PART + 10))

        with pytest.raises(StorageUnavailable, match="injected"):
            await writer.commit()

        assert incomplete_uploads(s3_client, s3_bucket) == []
        assert object_keys(s3_client, s3_bucket) == []
    finally:
        await storage.aclose()


async def test_cancelled_upload_leaves_no_incomplete_multipart_upload(
    moto_server: str, s3_bucket: str, s3_client: S3Client, buffer_budget: BufferBudget
) -> None:
    storage = GatedPartStorage(
        s3_bucket, moto_server, TEST_REGION, buffer_budget, PART, max_parts_in_flight=1
    )
    try:
        writer = await storage.open_writer(KEY, "application/pdf")

        async def upload() -> None:
            await write_all(writer, payload(3 * PART))
            await writer.commit()

        task = asyncio.create_task(upload())
        # Part 1 sending (held at the gate) while part 2 has filled behind it.
        async with asyncio.timeout(5):
            while buffer_budget.capacity - buffer_budget.available < 2 * PART:
                await asyncio.sleep(0.01)
        assert storage.started == [1]
        task.cancel()  # the client went away
        storage.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.abort()

        assert incomplete_uploads(s3_client, s3_bucket) == []
        assert object_keys(s3_client, s3_bucket) == []
        assert buffer_budget.available == buffer_budget.capacity
    finally:
        await storage.aclose()


# --- memory: parts in flight and the shared budget -----------------------------------------


@pytest.mark.parametrize("in_flight", [1, 2])
async def test_parts_fill_while_others_send_but_no_further(
    moto_server: str, s3_bucket: str, buffer_budget: BufferBudget, in_flight: int
) -> None:
    storage = GatedPartStorage(
        s3_bucket, moto_server, TEST_REGION, buffer_budget, PART, max_parts_in_flight=in_flight
    )
    try:
        writer = await storage.open_writer(KEY, "application/pdf")
        held = in_flight + 1  # Parts sending, plus the one filling behind them.
        data = payload((held + 1) * PART)

        # Parts go out as the next one starts; the last one fills while they are held up.
        await asyncio.wait_for(write_all(writer, data[: held * PART]), timeout=5)
        assert storage.started == list(range(1, in_flight + 1))
        assert buffer_budget.capacity - buffer_budget.available == held * PART

        # One more byte needs another part sent, which waits for the gate: the writer waits.
        blocked = asyncio.create_task(writer.write(data[held * PART : held * PART + 1]))
        await asyncio.sleep(0.2)
        assert not blocked.done()

        storage.gate.set()
        await asyncio.wait_for(blocked, timeout=5)
        await write_all(writer, data[held * PART + 1 :])
        await writer.commit()

        assert storage.max_in_flight == in_flight
        assert await read_all(storage, KEY) == data
        assert buffer_budget.available == buffer_budget.capacity
    finally:
        await storage.aclose()


async def test_write_waits_while_the_budget_is_spent_and_proceeds_when_released(
    moto_server: str, s3_bucket: str
) -> None:
    budget = BufferBudget(PART)
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, budget, PART)
    try:
        await budget.acquire(PART)  # another upload holds the whole budget
        writer = await storage.open_writer(KEY, "application/pdf")

        waiting = asyncio.create_task(writer.write(b"%PDF-1.7"))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        assert budget.waiting == 1

        budget.release(PART)
        await asyncio.wait_for(waiting, timeout=5)
        await writer.commit()

        assert await read_all(storage, KEY) == b"%PDF-1.7"
        assert budget.available == PART
    finally:
        await storage.aclose()


async def test_concurrent_uploads_share_a_budget_of_two_parts_without_deadlock(
    moto_server: str, s3_bucket: str
) -> None:
    budget = BufferBudget(2 * PART)
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, budget, PART)
    try:
        blobs = {f"raw/doc_{index}.pdf": payload(PART + 4096 * index, index) for index in range(4)}

        async def upload(key: str, data: bytes) -> None:
            writer = await storage.open_writer(key, "application/pdf")
            await write_all(writer, data, chunk_size=256 * 1024)
            await writer.commit()

        await asyncio.wait_for(
            asyncio.gather(*(upload(key, data) for key, data in blobs.items())), timeout=30
        )

        for key, data in blobs.items():
            assert await read_all(storage, key) == data
        assert budget.available == budget.capacity
    finally:
        await storage.aclose()


async def test_uploads_waiting_for_the_budget_hold_no_part_outside_it(
    moto_server: str, s3_bucket: str
) -> None:
    # Chunks that straddle part boundaries: the write that fills one part starts the next and
    # waits for budget in the same call. That wait once kept the part just sent alive: 8 MiB
    # per upload beyond the budget, the whole gap in the memory benchmark.
    budget = BufferBudget(2 * PART)
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, budget, PART)
    blobs = {f"raw/doc_{index}.pdf": payload(3 * PART + 1000 * index, index) for index in range(6)}

    async def upload(key: str, data: bytes) -> None:
        writer = await storage.open_writer(key, "application/pdf")
        await write_all(writer, data, chunk_size=65_537)
        await writer.commit()

    tracemalloc.start()
    try:
        await asyncio.wait_for(
            asyncio.gather(*(upload(key, data) for key, data in blobs.items())), timeout=60
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await storage.aclose()
    # The data themselves were allocated before tracing began; what is traced is the buffers.
    assert peak < 2 * PART + 2 * 1024 * 1024, f"peak {peak / PART:.2f} parts"


async def test_a_large_upload_holds_at_most_its_parts_in_flight_in_memory(
    small_part_storage: S3Storage,
) -> None:
    data = payload(6 * PART)
    writer = await small_part_storage.open_writer(KEY, "application/pdf")

    tracemalloc.start()
    try:
        await write_and_commit(writer, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Two parts sending, one filling, and small change: no part buffer is ever copied.
    assert peak < (small_part_storage.max_parts_in_flight + 1) * PART + MIB
    assert await read_all(small_part_storage, KEY) == data


def test_part_size_outside_s3_limits_is_refused(moto_server: str) -> None:
    with pytest.raises(ValueError, match="part_size"):
        S3Storage("bucket", moto_server, TEST_REGION, BufferBudget(64 * MIB), part_size=MIB)


def test_part_size_beyond_the_whole_budget_is_refused(moto_server: str) -> None:
    with pytest.raises(ValueError, match="budget"):
        S3Storage("bucket", moto_server, TEST_REGION, BufferBudget(16 * MIB), part_size=32 * MIB)


# --- reading, existence, deletion -----------------------------------------------------------


async def test_read_streams_in_bounded_chunks(s3_storage: S3Storage) -> None:
    data = payload(3 * MIB + 5)
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(data)
    await writer.commit()

    chunks = [chunk async for chunk in s3_storage.read(KEY)]

    assert len(chunks) > 1
    assert all(len(chunk) <= READ_CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == data


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (10, 19), (READ_CHUNK_BYTES - 3, READ_CHUNK_BYTES + 700_000), (999_990, 999_999)],
)
async def test_range_read_returns_the_inclusive_slice(
    s3_storage: S3Storage, start: int, end: int
) -> None:
    data = payload(1_000_000)
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(data)
    await writer.commit()

    assert await read_all(s3_storage, KEY, ByteRange(start, end)) == data[start : end + 1]


async def test_stopping_a_read_early_releases_it(s3_storage: S3Storage) -> None:
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(payload(2 * MIB))
    await writer.commit()

    stream = s3_storage.read(KEY)
    first = await anext(stream)
    await stream.aclose()  # the client went away mid-download

    assert len(first) == READ_CHUNK_BYTES
    assert await s3_storage.exists(KEY)  # the storage still answers


async def test_read_of_a_missing_key_raises_file_not_found(s3_storage: S3Storage) -> None:
    with pytest.raises(FileNotFoundError):
        await read_all(s3_storage, "raw/missing.pdf")


async def test_exists_and_delete(s3_storage: S3Storage) -> None:
    writer = await s3_storage.open_writer(KEY, "application/pdf")
    await writer.write(b"%PDF-1.7")
    await writer.commit()
    assert await s3_storage.exists(KEY)

    await s3_storage.delete(KEY)

    assert not await s3_storage.exists(KEY)
    await s3_storage.delete(KEY)  # deleting a missing object is fine


# --- health and outages ---------------------------------------------------------------------


async def test_check_passes_for_a_reachable_bucket(s3_storage: S3Storage) -> None:
    await s3_storage.check()


async def test_check_raises_storage_unavailable_for_a_missing_bucket(
    moto_server: str, buffer_budget: BufferBudget
) -> None:
    storage = S3Storage("no-such-bucket-here", moto_server, TEST_REGION, buffer_budget)
    try:
        with pytest.raises(StorageUnavailable, match="404"):
            await storage.check()
    finally:
        await storage.aclose()


async def test_check_raises_storage_unavailable_against_a_dead_endpoint(
    aws_credentials: None, buffer_budget: BufferBudget
) -> None:
    port = free_port()  # nothing listens there
    storage = S3Storage("bucket", f"http://127.0.0.1:{port}", TEST_REGION, buffer_budget)
    try:
        with pytest.raises(StorageUnavailable) as caught:
            await asyncio.wait_for(storage.check(), timeout=10)

        message = caught.value.message
        assert len(message) <= 100
        assert str(port) not in message
        assert "127.0.0.1" not in message
    finally:
        await storage.aclose()


async def test_unreachable_endpoint_fails_writes_and_reads_with_storage_unavailable(
    aws_credentials: None, buffer_budget: BufferBudget
) -> None:
    storage = S3Storage("bucket", f"http://127.0.0.1:{free_port()}", TEST_REGION, buffer_budget)
    try:
        writer = await storage.open_writer(KEY, "application/pdf")
        await writer.write(b"%PDF-1.7")
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(writer.commit(), timeout=20)
        with pytest.raises(StorageUnavailable):
            await asyncio.wait_for(storage.exists(KEY), timeout=20)

        assert buffer_budget.available == buffer_budget.capacity
    finally:
        await storage.aclose()


async def test_boto3_calls_run_on_the_storage_thread_pool(s3_storage: S3Storage) -> None:
    worker_thread = await s3_storage._run(threading.get_ident)

    assert worker_thread != threading.get_ident()


# --- janitor --------------------------------------------------------------------------------


async def test_abort_incomplete_uploads_removes_those_older_than_the_threshold(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key="raw/doc_crashed.pdf")

    # moto dates every upload in 2010, so "recent" here means within a century.
    assert await s3_storage.abort_incomplete_uploads(timedelta(days=36_500)) == 0
    assert await s3_storage.abort_incomplete_uploads(timedelta(0)) == 1

    assert incomplete_uploads(s3_client, s3_bucket) == []


async def test_abort_incomplete_uploads_keeps_to_its_prefix(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key="raw/doc_crashed.pdf")
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key="exports/doc_other.pdf")

    assert await s3_storage.abort_incomplete_uploads(timedelta(hours=1), "raw/") == 1

    assert incomplete_uploads(s3_client, s3_bucket) == ["exports/doc_other.pdf"]


# --- listing --------------------------------------------------------------------------------


async def test_list_objects_pages_through_the_objects_under_the_prefix(
    moto_server: str, s3_bucket: str, s3_client: S3Client, buffer_budget: BufferBudget
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    keys = [f"raw/doc_{index}.pdf" for index in range(5)]
    for index, key in enumerate(keys):
        s3_client.put_object(Bucket=s3_bucket, Key=key, Body=b"x" * index)
    s3_client.put_object(Bucket=s3_bucket, Key="exports/doc_9.pdf", Body=b"other")
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key="raw/doc_unfinished.pdf")
    # Two keys a page: five objects take three requests, and the listing still sees them all.
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, buffer_budget, list_page_size=2)
    requests: list[str] = []
    storage.client.meta.events.register(
        "before-call.s3.ListObjectsV2", lambda **kwargs: requests.append("list")
    )
    try:
        listed = [item async for item in storage.list_objects("raw/")]
    finally:
        await storage.aclose()

    assert [(item.key, item.size) for item in listed] == [(key, i) for i, key in enumerate(keys)]
    assert len(requests) == 3
    assert all(before <= item.modified_at <= datetime.now(UTC) for item in listed)

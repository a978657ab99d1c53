"""Partial objects on S3 (resumable uploads) against moto's S3 server over HTTP.

Every state goes through JSON between calls, as it does through the caller's database row, and
"another process" is a second `S3Storage` that knows nothing but that state.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import tracemalloc
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from tests.fixtures.s3 import TEST_REGION
from tests.integration.storage.test_s3_storage import (
    FailingPartStorage,
    GatedPartStorage,
    chunked,
    payload,
    read_all,
)
from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange
from upload_service.storage.budget import BufferBudget
from upload_service.storage.partial import PartialState
from upload_service.storage.s3 import MIN_PART_SIZE, PART_SIZE, S3Storage
from upload_service.storage.s3_appender import MAX_TAIL_SEGMENTS
from upload_service.storage.s3_tail_cache import TailCache

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MIB = 1024 * 1024
KEY = "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf"
TAILS = f"tus-tails/{KEY}/"
WRITE_CHUNK = 64 * 1024  # what the door hands on per write


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored(state: PartialState) -> PartialState:
    """The state as the caller's JSON column gives it back."""
    return json.loads(json.dumps(state))  # type: ignore[no-any-return]


async def append(
    storage: S3Storage, state: PartialState, offset: int, data: bytes
) -> tuple[int, PartialState]:
    """One request: append `data` at `offset` and save."""
    appender = await storage.partial_objects.append(KEY, stored(state), offset)
    for chunk in chunked(data, WRITE_CHUNK):
        await appender.write(chunk)
    new_offset, new_state = await appender.save()
    return new_offset, stored(new_state)


async def upload(storage: S3Storage, data: bytes, request_size: int) -> tuple[int, PartialState]:
    """Begin a partial object and append `data` in requests of `request_size` bytes."""
    state = await storage.partial_objects.begin(KEY)
    offset = 0
    for piece in chunked(data, request_size):
        offset, state = await append(storage, state, offset, piece)
    return offset, state


def part_sizes(s3_client: S3Client, bucket: str, state: PartialState) -> dict[int, int]:
    """The parts S3 holds for the partial object, by number."""
    parts = s3_client.list_parts(Bucket=bucket, Key=KEY, UploadId=state["upload_id"])
    return {part["PartNumber"]: part["Size"] for part in parts.get("Parts", [])}


def keys_under(s3_client: S3Client, bucket: str, prefix: str) -> list[str]:
    listing = s3_client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listing.get("Contents", [])]


def open_uploads(s3_client: S3Client, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


class CountingReads(S3Storage):
    """An S3 storage that counts the objects it reads under the tails' prefix."""

    tail_reads = 0

    def read(self, key: str, byte_range: ByteRange | None = None) -> AsyncGenerator[bytes, None]:
        if key.startswith(TAILS):
            self.tail_reads += 1
        return super().read(key, byte_range)


@pytest.fixture
async def other_process(moto_server: str, s3_bucket: str) -> AsyncIterator[CountingReads]:
    """A second storage with a budget of its own: what another process of the service has."""
    storage = CountingReads(s3_bucket, moto_server, TEST_REGION, BufferBudget(64 * MIB))
    yield storage
    await storage.aclose()


# --- parts and tail -------------------------------------------------------------------------


async def test_one_mebibyte_requests_make_whole_parts_and_keep_the_rest_as_tail(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(20 * MIB)

    offset, state = await upload(s3_storage, data, 1 * MIB)

    assert offset == 20 * MIB
    assert part_sizes(s3_client, s3_bucket, state) == {1: PART_SIZE, 2: PART_SIZE}
    assert sum(segment["size"] for segment in state["tail"]) == 4 * MIB
    assert all(key.startswith(TAILS) for key in keys_under(s3_client, s3_bucket, ""))
    await s3_storage.partial_objects.finish(KEY, state)
    assert sha256(await read_all(s3_storage, KEY)) == sha256(data)


async def test_a_request_of_whole_parts_writes_no_tail_object(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(24 * MIB)

    offset, state = await upload(s3_storage, data, 8 * MIB)

    assert offset == 24 * MIB
    assert state["tail"] == []
    assert keys_under(s3_client, s3_bucket, "tus-tails/") == []
    assert part_sizes(s3_client, s3_bucket, state) == {1: PART_SIZE, 2: PART_SIZE, 3: PART_SIZE}


async def test_small_requests_keep_the_tail_in_few_objects(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(7 * MIB + 12345)

    offset, state = await upload(s3_storage, data, 64 * 1024)

    # 114 saves, all short of a part: merged as they pile up, never one object per save.
    assert offset == len(data)
    assert part_sizes(s3_client, s3_bucket, state) == {}
    assert 1 < len(state["tail"]) <= MAX_TAIL_SEGMENTS
    await s3_storage.partial_objects.finish(KEY, state)
    assert sha256(await read_all(s3_storage, KEY)) == sha256(data)


async def test_the_tail_is_in_s3_so_another_process_continues_the_upload(
    s3_storage: S3Storage, other_process: S3Storage
) -> None:
    first, second, third = payload(3 * MIB, 1), payload(6 * MIB, 2), payload(2 * MIB, 3)
    state = await s3_storage.partial_objects.begin(KEY)
    offset, state = await append(s3_storage, state, 0, first)
    await s3_storage.aclose()  # the first process is gone, and its memory with it

    offset, state = await append(other_process, state, offset, second)
    offset, state = await append(other_process, state, offset, third)
    await other_process.partial_objects.finish(KEY, state)

    assert offset == 11 * MIB
    assert sha256(await read_all(other_process, KEY)) == sha256(first + second + third)


async def test_absorbed_tail_objects_stay_until_the_next_call_then_go(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    offset, state = await upload(s3_storage, payload(3 * MIB), 3 * MIB)
    first_tail = keys_under(s3_client, s3_bucket, TAILS)

    # This request fills a part with the tail: the caller has not stored the new state yet,
    # so the old tail must still be readable.
    offset, state = await append(s3_storage, state, offset, payload(6 * MIB, 2))
    assert state["garbage"] == first_tail
    assert set(first_tail) <= set(keys_under(s3_client, s3_bucket, TAILS))

    appender = await s3_storage.partial_objects.append(KEY, state, offset)
    await appender.rollback()
    deadline = time.monotonic() + 5
    while set(first_tail) & set(keys_under(s3_client, s3_bucket, TAILS)):
        assert time.monotonic() < deadline, "the absorbed tail objects were never deleted"
        await asyncio.sleep(0.05)


async def test_offset_must_be_the_saved_one(s3_storage: S3Storage) -> None:
    offset, state = await upload(s3_storage, payload(MIB), MIB)

    with pytest.raises(ValueError, match="offset"):
        await s3_storage.partial_objects.append(KEY, state, offset + 1)


async def test_a_process_with_parts_shorter_than_the_saved_tail_refuses_to_append(
    s3_storage: S3Storage, moto_server: str, s3_bucket: str
) -> None:
    offset, state = await upload(s3_storage, payload(6 * MIB), 6 * MIB)
    small_parts = S3Storage(
        s3_bucket, moto_server, TEST_REGION, BufferBudget(64 * MIB), part_size=MIN_PART_SIZE
    )
    try:
        with pytest.raises(ValueError, match="part size"):
            await small_parts.partial_objects.append(KEY, state, offset)
    finally:
        await small_parts.aclose()


async def test_a_tail_object_that_changed_is_refused(
    s3_storage: S3Storage, other_process: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    _, state = await upload(s3_storage, payload(2 * MIB), 2 * MIB)
    [tail_key] = keys_under(s3_client, s3_bucket, TAILS)
    s3_client.put_object(Bucket=s3_bucket, Key=tail_key, Body=payload(2 * MIB, 99))

    with pytest.raises(ValueError, match="differs"):
        await other_process.partial_objects.finish(KEY, state)


# --- the tail cache -------------------------------------------------------------------------


async def test_the_process_that_stored_the_tail_sends_the_part_without_reading_it_back(
    other_process: CountingReads, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(20 * MIB)

    _, state = await upload(other_process, data, 1 * MIB)
    assert part_sizes(s3_client, s3_bucket, state) == {1: PART_SIZE, 2: PART_SIZE}
    await other_process.partial_objects.finish(KEY, state)

    assert other_process.tail_reads == 0
    assert sha256(await read_all(other_process, KEY)) == sha256(data)
    assert other_process.partial_objects.tails.held == 0  # every tail absorbed or deleted


async def test_another_process_reads_the_tail_from_s3(
    s3_storage: S3Storage, other_process: CountingReads
) -> None:
    first, second = payload(3 * MIB, 1), payload(6 * MIB, 2)
    offset, state = await upload(s3_storage, first, 1 * MIB)

    offset, state = await append(other_process, state, offset, second)
    await other_process.partial_objects.finish(KEY, state)

    assert other_process.tail_reads == 3  # the three 1 MiB tail objects the first process stored
    assert sha256(await read_all(other_process, KEY)) == sha256(first + second)


async def test_a_cached_tail_that_does_not_match_the_saved_one_is_read_from_s3(
    other_process: CountingReads,
) -> None:
    data = payload(9 * MIB)
    offset, state = await upload(other_process, data[: 2 * MIB], 1 * MIB)
    tails = other_process.partial_objects.tails
    for segment in state["tail"]:
        tails.put(segment["key"], b"x" * segment["size"])  # same size, wrong bytes

    offset, state = await append(other_process, state, offset, data[2 * MIB :])
    await other_process.partial_objects.finish(KEY, state)

    assert other_process.tail_reads == 2
    assert sha256(await read_all(other_process, KEY)) == sha256(data)


def test_the_tail_cache_forgets_the_oldest_entries_past_its_size() -> None:
    cache = TailCache(max_bytes=3 * MIB)
    for name in "abc":
        cache.put(name, b"1" * MIB)

    cache.put("d", b"2" * (2 * MIB))
    cache.put("huge", b"3" * (4 * MIB))  # larger than the whole cache: not kept

    assert [cache.get(name) is not None for name in ("a", "b", "c", "d", "huge")] == [
        False,
        False,
        True,
        True,
        False,
    ]
    assert cache.held == 3 * MIB
    cache.discard(["c", "d", "never-there"])
    assert cache.held == 0


# --- lost requests --------------------------------------------------------------------------


async def test_rollback_forgets_the_request_and_keeps_the_old_state_valid(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    first = payload(3 * MIB, 1)
    offset, state = await upload(s3_storage, first, 3 * MIB)
    tail_before = keys_under(s3_client, s3_bucket, TAILS)

    appender = await s3_storage.partial_objects.append(KEY, state, offset)
    for chunk in chunked(payload(9 * MIB, 2), WRITE_CHUNK):  # a part, with the tail, and more
        await appender.write(chunk)
    await appender.rollback()

    assert keys_under(s3_client, s3_bucket, TAILS) == tail_before
    assert s3_storage.budget.available == s3_storage.budget.capacity
    second = payload(7 * MIB, 3)
    offset, state = await append(s3_storage, state, offset, second)
    await s3_storage.partial_objects.finish(KEY, state)
    assert sha256(await read_all(s3_storage, KEY)) == sha256(first + second)


async def test_a_saved_request_the_caller_never_stored_is_rolled_back(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    offset, state = await upload(s3_storage, payload(MIB), MIB)
    tail_before = keys_under(s3_client, s3_bucket, TAILS)

    appender = await s3_storage.partial_objects.append(KEY, state, offset)
    await appender.write(payload(MIB, 2))
    await appender.save()
    await appender.rollback()  # the database refused the new offset

    assert keys_under(s3_client, s3_bucket, TAILS) == tail_before


async def test_a_request_lost_in_a_crash_is_overwritten_by_the_next_at_the_old_offset(
    s3_storage: S3Storage, other_process: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    first = payload(2 * MIB, 1)
    offset, state = await upload(s3_storage, first, 2 * MIB)

    # A request that sent two parts (the tail and 14 MiB of its own), then its process died.
    crashed = await s3_storage.partial_objects.append(KEY, state, offset)
    for chunk in chunked(payload(17 * MIB, 2), WRITE_CHUNK):
        await crashed.write(chunk)
    deadline = time.monotonic() + 10
    while len(part_sizes(s3_client, s3_bucket, state)) < 2:
        assert time.monotonic() < deadline, "the lost request's parts never arrived"
        await asyncio.sleep(0.05)
    await s3_storage.aclose()

    # The client resumes at the stored offset with other bytes; only one part's worth this time.
    resumed = payload(9 * MIB, 3)
    offset, state = await append(other_process, state, offset, resumed)
    assert part_sizes(s3_client, s3_bucket, state)[1] == PART_SIZE
    await other_process.partial_objects.finish(KEY, state)

    # The stray part 2 is left out by completion; part 1 is the new request's.
    assert sha256(await read_all(other_process, KEY)) == sha256(first + resumed)


async def test_a_part_that_fails_fails_the_request_and_the_old_state_stays_valid(
    s3_storage: S3Storage, moto_server: str, s3_bucket: str, s3_client: S3Client
) -> None:
    first = payload(3 * MIB, 1)
    offset, state = await upload(s3_storage, first, 3 * MIB)
    tail_before = keys_under(s3_client, s3_bucket, TAILS)
    failing = FailingPartStorage(
        s3_bucket, moto_server, TEST_REGION, BufferBudget(64 * MIB), failing_part=2
    )
    try:
        # Part 1 goes, part 2 fails: the request fails at save at the latest.
        with pytest.raises(StorageUnavailable):
            await append(failing, state, offset, payload(15 * MIB, 2))
        assert failing.budget.available == failing.budget.capacity
    finally:
        await failing.aclose()

    assert keys_under(s3_client, s3_bucket, TAILS) == tail_before
    second = payload(6 * MIB, 3)
    offset, state = await append(s3_storage, state, offset, second)
    await s3_storage.partial_objects.finish(KEY, state)
    assert sha256(await read_all(s3_storage, KEY)) == sha256(first + second)


async def test_a_cancelled_request_gives_its_budget_back_once_its_parts_end(
    moto_server: str, s3_bucket: str, s3_client: S3Client
) -> None:
    budget = BufferBudget(64 * MIB)
    storage = GatedPartStorage(s3_bucket, moto_server, TEST_REGION, budget)
    try:
        state = await storage.partial_objects.begin(KEY)
        appender = await storage.partial_objects.append(KEY, stored(state), 0)

        async def send() -> None:
            for chunk in chunked(payload(30 * MIB), WRITE_CHUNK):
                await appender.write(chunk)

        sending = asyncio.create_task(send())
        deadline = time.monotonic() + 10
        while storage.in_flight < storage.max_parts_in_flight:  # two parts held at the gate
            assert time.monotonic() < deadline, "the parts never started"
            await asyncio.sleep(0.01)
        sending.cancel()
        storage.gate.set()
        with pytest.raises(asyncio.CancelledError):
            await sending

        assert budget.available == budget.capacity
        assert storage.in_flight == 0
        with pytest.raises(RuntimeError):
            await appender.save()
        assert keys_under(s3_client, s3_bucket, TAILS) == []
    finally:
        await storage.aclose()


async def test_part_numbers_do_not_grow_with_resumes(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    state = await s3_storage.partial_objects.begin(KEY)
    for attempt in range(5):  # five requests that each sent a part and were lost
        appender = await s3_storage.partial_objects.append(KEY, state, 0)
        for chunk in chunked(payload(PART_SIZE, attempt), WRITE_CHUNK):
            await appender.write(chunk)
        await appender.rollback()
    data = payload(2 * PART_SIZE, 42)

    _, state = await append(s3_storage, state, 0, data)

    assert [part["number"] for part in state["parts"]] == [1, 2]
    assert part_sizes(s3_client, s3_bucket, state) == {1: PART_SIZE, 2: PART_SIZE}
    await s3_storage.partial_objects.finish(KEY, state)
    assert await read_all(s3_storage, KEY) == data


# --- finish and discard ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [3 * MIB + 5, PART_SIZE, PART_SIZE + 1, 20 * MIB],
    ids=["under-5MiB", "one-part", "one-part-and-a-byte", "20MiB"],
)
async def test_finish_gives_the_exact_bytes(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str, size: int
) -> None:
    data = payload(size)
    offset, state = await upload(s3_storage, data, 3 * MIB)  # 3 MiB never divides a part

    await s3_storage.partial_objects.finish(KEY, state)

    assert offset == size
    assert sha256(await read_all(s3_storage, KEY)) == sha256(data)
    assert open_uploads(s3_client, s3_bucket) == []
    assert keys_under(s3_client, s3_bucket, "tus-tails/") == []


async def test_an_empty_object_can_be_finished(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    state = await s3_storage.partial_objects.begin(KEY)

    await s3_storage.partial_objects.finish(KEY, stored(state))

    assert await read_all(s3_storage, KEY) == b""
    assert open_uploads(s3_client, s3_bucket) == []


async def test_finish_twice_is_fine(
    s3_storage: S3Storage, other_process: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    data = payload(10 * MIB)
    _, state = await upload(s3_storage, data, 3 * MIB)
    await s3_storage.partial_objects.finish(KEY, state)

    # A final request repeated after a crash, on another process.
    await other_process.partial_objects.finish(KEY, state)

    assert sha256(await read_all(other_process, KEY)) == sha256(data)
    assert keys_under(s3_client, s3_bucket, "tus-tails/") == []


async def test_finish_of_a_partial_object_that_is_gone_raises(s3_storage: S3Storage) -> None:
    _, state = await upload(s3_storage, payload(10 * MIB), 10 * MIB)
    await s3_storage.partial_objects.discard(KEY, state)

    with pytest.raises(FileNotFoundError):
        await s3_storage.partial_objects.finish(KEY, state)


async def test_discard_leaves_no_upload_and_no_tail(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    offset, state = await upload(s3_storage, payload(11 * MIB), 3 * MIB)
    lost = await s3_storage.partial_objects.append(KEY, state, offset)
    await lost.write(payload(MIB, 2))
    await lost.save()  # a tail object the caller never stored

    await s3_storage.partial_objects.discard(KEY, state)
    await s3_storage.partial_objects.discard(KEY, state)  # gone is gone: no error

    assert open_uploads(s3_client, s3_bucket) == []
    assert keys_under(s3_client, s3_bucket, "") == []


# --- budget ---------------------------------------------------------------------------------


async def test_a_budget_of_one_part_still_completes(moto_server: str, s3_bucket: str) -> None:
    budget = BufferBudget(MIN_PART_SIZE)
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, budget, MIN_PART_SIZE)
    try:
        data = payload(4 * MIN_PART_SIZE + 777)
        state = await storage.partial_objects.begin(KEY)
        offset = 0
        for request_size in (MIB, 7 * MIB, 2 * MIB + 3):  # whatever the clients send
            piece = data[offset : offset + request_size]
            offset, state = await asyncio.wait_for(append(storage, state, offset, piece), 30)
        offset, state = await append(storage, state, offset, data[offset:])
        await asyncio.wait_for(storage.partial_objects.finish(KEY, state), 30)

        assert await read_all(storage, KEY) == data
        assert budget.available == budget.capacity
    finally:
        await storage.aclose()


async def test_an_append_holds_at_most_its_parts_in_flight_in_memory(
    s3_storage: S3Storage,
) -> None:
    state = await s3_storage.partial_objects.begin(KEY)
    offset, state = await append(s3_storage, state, 0, payload(3 * MIB, 1))
    data = payload(5 * PART_SIZE)

    tracemalloc.start()
    try:
        offset, state = await append(s3_storage, state, offset, data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Two parts sending, one filling (the tail read back into it), and small change (boto3's
    # requests, a read chunk of the tail): never a fourth part.
    assert peak < (s3_storage.max_parts_in_flight + 1) * PART_SIZE + 2 * MIB
    assert s3_storage.budget.available == s3_storage.budget.capacity


async def test_requests_of_several_uploads_share_a_small_budget(
    moto_server: str, s3_bucket: str
) -> None:
    budget = BufferBudget(2 * MIN_PART_SIZE)
    storage = S3Storage(s3_bucket, moto_server, TEST_REGION, budget, MIN_PART_SIZE)
    blobs = {f"raw/doc_{i}.pdf": payload(2 * MIN_PART_SIZE + 1000 * i, i) for i in range(4)}

    async def one_upload(key: str, data: bytes) -> None:
        state = await storage.partial_objects.begin(key)
        offset = 0
        for piece in chunked(data, 3 * MIB):
            appender = await storage.partial_objects.append(key, stored(state), offset)
            for chunk in chunked(piece, WRITE_CHUNK):
                await appender.write(chunk)
            offset, state = await appender.save()
        await storage.partial_objects.finish(key, stored(state))

    try:
        await asyncio.wait_for(
            asyncio.gather(*(one_upload(key, data) for key, data in blobs.items())), timeout=60
        )
        for key, data in blobs.items():
            assert await read_all(storage, key) == data
        assert budget.available == budget.capacity
    finally:
        await storage.aclose()


# --- janitor --------------------------------------------------------------------------------


async def test_abort_incomplete_uploads_spares_the_keys_it_is_told_to_keep(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    await s3_storage.partial_objects.begin(KEY)
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key="raw/doc_crashed.pdf")

    aborted = await s3_storage.abort_incomplete_uploads(timedelta(0), "raw/", keep={KEY})

    assert aborted == 1
    assert open_uploads(s3_client, s3_bucket) == [KEY]

"""Local partial objects on a real file system: appends from an offset, durable saves, finish."""

from __future__ import annotations

import asyncio
import random
from datetime import timedelta
from pathlib import Path

import pytest

from upload_service.storage.budget import BufferBudget
from upload_service.storage.keys import RAW_PREFIX
from upload_service.storage.local import TEMP_PREFIX, LocalStorage
from upload_service.storage.local_partial import APPEND_BATCH_BYTES, PartialBytesMissing
from upload_service.storage.local_writer import WRITE_BATCH_BYTES

KEY = "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf"


def payload(size: int, seed: int = 11) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
def budget() -> BufferBudget:
    return BufferBudget.from_megabytes(16)


@pytest.fixture
def storage(tmp_path: Path, budget: BufferBudget) -> LocalStorage:
    return LocalStorage(tmp_path / "storage", budget)


def partial_file(storage: LocalStorage) -> Path:
    return storage.root / ".partial" / KEY


async def append(storage: LocalStorage, offset: int, data: bytes) -> int:
    appender = await storage.partial_objects.append(KEY, {}, offset)
    for start in range(0, len(data), 64 * 1024):
        await appender.write(data[start : start + 64 * 1024])
    new_offset, state = await appender.save()
    assert state == {}
    return new_offset


async def test_saves_add_up_in_a_hidden_file_that_no_listing_or_key_can_reach(
    storage: LocalStorage,
) -> None:
    data = payload(3 * WRITE_BATCH_BYTES // 2)
    partials = storage.partial_objects
    assert await partials.begin(KEY) == {}
    assert await append(storage, 0, data[:1000]) == 1000
    assert await append(storage, 1000, data[1000:]) == len(data)
    assert partial_file(storage).read_bytes() == data
    assert [stored async for stored in storage.list_objects("")] == []
    assert not await storage.exists(KEY)


async def test_an_append_forgets_bytes_past_the_offset_that_were_never_saved(
    storage: LocalStorage,
) -> None:
    data = payload(5000)
    await append(storage, 0, data[:2000])
    # A request that wrote 500 bytes and died before its offset moved.
    with partial_file(storage).open("ab") as file:
        file.write(b"x" * 500)
    assert await append(storage, 2000, data[2000:]) == 5000
    assert partial_file(storage).read_bytes() == data


async def test_rollback_cuts_the_file_back_to_where_the_appender_began(
    storage: LocalStorage, budget: BufferBudget
) -> None:
    data = payload(2 * WRITE_BATCH_BYTES)
    await append(storage, 0, data[:100])
    appender = await storage.partial_objects.append(KEY, {}, 100)
    for start in range(100, len(data), 64 * 1024):
        await appender.write(data[start : start + 64 * 1024])
    await appender.rollback()
    await appender.rollback()  # Twice is fine.
    assert partial_file(storage).read_bytes() == data[:100]
    assert budget.available == budget.capacity


async def test_buffers_are_paid_for_until_written_and_paid_back_after_save(
    storage: LocalStorage, budget: BufferBudget
) -> None:
    appender = await storage.partial_objects.append(KEY, {}, 0)
    await appender.write(payload(1000))
    assert budget.available < budget.capacity
    await appender.save()
    assert budget.available == budget.capacity


async def test_a_long_append_is_written_while_it_arrives_not_all_at_save(
    storage: LocalStorage, budget: BufferBudget
) -> None:
    # The PATCH's client waits for `save`: by then every batch but the last is already in the
    # file (each synced in its thread while the next arrived), so `save` has one batch left.
    data = payload(4 * APPEND_BATCH_BYTES)
    appender = await storage.partial_objects.append(KEY, {}, 0)
    for start in range(0, len(data), 64 * 1024):
        await appender.write(data[start : start + 64 * 1024])
        # What is buffered in memory never passes one batch and the one being written.
        assert budget.capacity - budget.available <= 2 * APPEND_BATCH_BYTES
    async with asyncio.timeout(10):  # The last full batch's thread finishes meanwhile.
        while partial_file(storage).stat().st_size < len(data) - APPEND_BATCH_BYTES:
            await asyncio.sleep(0.01)
    assert await appender.save() == (len(data), {})
    assert partial_file(storage).read_bytes() == data


async def test_an_offset_past_the_saved_bytes_means_storage_lost_them(
    storage: LocalStorage,
) -> None:
    await append(storage, 0, payload(100))
    with pytest.raises(PartialBytesMissing):
        await storage.partial_objects.append(KEY, {}, 500)
    assert partial_file(storage).stat().st_size == 100


async def test_finish_puts_the_whole_object_in_place_and_is_idempotent(
    storage: LocalStorage,
) -> None:
    data = payload(10_000)
    await append(storage, 0, data)
    await storage.partial_objects.finish(KEY, {})
    assert await storage.exists(KEY)
    assert not partial_file(storage).exists()
    await storage.partial_objects.finish(KEY, {})  # An answer was lost: done already.
    assert (storage.root / KEY).read_bytes() == data


async def test_finish_without_any_bytes_anywhere_raises(storage: LocalStorage) -> None:
    with pytest.raises(FileNotFoundError):
        await storage.partial_objects.finish(KEY, {})


async def test_discard_removes_the_bytes_and_never_raises_for_what_is_gone(
    storage: LocalStorage,
) -> None:
    await append(storage, 0, payload(100))
    await storage.partial_objects.discard(KEY, {})
    assert not partial_file(storage).exists()
    await storage.partial_objects.discard(KEY, {})


@pytest.mark.parametrize("key", ["", "/etc/passwd", "raw/../../x", ".partial/raw/x.pdf"])
async def test_a_bad_key_never_names_a_partial_file(storage: LocalStorage, key: str) -> None:
    with pytest.raises(ValueError, match="invalid storage key"):
        await storage.partial_objects.append(key, {}, 0)


async def test_the_crash_sweep_spares_the_temporary_files_of_kept_keys(
    storage: LocalStorage,
) -> None:
    kept, other = KEY, "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWX.pdf"
    for key in (kept, other):
        path = storage.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f"{TEMP_PREFIX}{path.name}.abc123.part").write_bytes(b"x")
    swept = await storage.abort_incomplete_uploads(timedelta(seconds=-1), RAW_PREFIX, keep={kept})
    assert swept == 1
    left = [p.name for p in (storage.root / "raw").iterdir()]
    assert left == [f"{TEMP_PREFIX}doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf.abc123.part"]

"""Local storage on a real file system: atomic publication, no leftovers, keys kept inside."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from upload_service.errors import StorageUnavailable
from upload_service.storage.base import ByteRange, StoredObject
from upload_service.storage.budget import STEP_BYTES, BufferBudget
from upload_service.storage.local import (
    LIST_BATCH,
    READ_CHUNK_BYTES,
    TEMP_PREFIX,
    InvalidStorageKey,
    LocalStorage,
)
from upload_service.storage.local_writer import WRITE_BATCH_BYTES

KEY = "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf"


def payload(size: int, seed: int = 7) -> bytes:
    """Deterministic bytes of the given size."""
    return random.Random(seed).randbytes(size)


def files_under(root: Path) -> list[str]:
    """Every regular file under `root`, hidden ones included, as sorted relative paths."""
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


async def read_all(storage: LocalStorage, key: str, byte_range: ByteRange | None = None) -> bytes:
    """All the bytes `read` streams."""
    return b"".join([chunk async for chunk in storage.read(key, byte_range)])


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    """A local storage rooted in a fresh temporary directory."""
    return LocalStorage(tmp_path / "storage")


async def store(storage: LocalStorage, key: str, data: bytes) -> None:
    """Write and commit one object."""
    writer = await storage.open_writer(key, "application/pdf")
    await writer.write(data)
    await writer.commit()


# --- the buffer budget -------------------------------------------------------------------


async def test_a_small_write_holds_a_step_of_the_budget(tmp_path: Path) -> None:
    budget = BufferBudget.from_megabytes(16)
    storage = LocalStorage(tmp_path / "storage", budget)
    writer = await storage.open_writer(KEY, "application/pdf")

    await writer.write(b"%PDF-1.7 ten")

    assert budget.capacity - budget.available == STEP_BYTES
    await writer.commit()
    assert budget.available == budget.capacity


async def test_write_batches_count_against_the_budget_until_written(tmp_path: Path) -> None:
    budget = BufferBudget.from_megabytes(16)
    storage = LocalStorage(tmp_path / "storage", budget)
    writer = await storage.open_writer(KEY, "application/pdf")

    data = payload(WRITE_BATCH_BYTES + 1)
    for offset in range(0, len(data), 64 * 1024):
        await writer.write(data[offset : offset + 64 * 1024])
        # One batch may be with its thread while the next fills: two batches at most.
        assert budget.capacity - budget.available <= 2 * WRITE_BATCH_BYTES
    assert budget.capacity - budget.available >= WRITE_BATCH_BYTES

    await writer.abort()
    assert budget.available == budget.capacity
    assert files_under(tmp_path / "storage") == []


async def test_a_write_waits_while_the_budget_is_spent(tmp_path: Path) -> None:
    budget = BufferBudget.from_megabytes(16)
    storage = LocalStorage(tmp_path / "storage", budget)
    await budget.acquire(budget.capacity)  # other uploads hold it all
    writer = await storage.open_writer(KEY, "application/pdf")

    pending = asyncio.create_task(writer.write(b"%PDF-1.7"))
    await asyncio.sleep(0.05)
    assert not pending.done()

    budget.release(budget.capacity)
    await asyncio.wait_for(pending, timeout=1)
    await writer.commit()
    assert budget.available == budget.capacity


# --- writing -------------------------------------------------------------------------------


async def test_object_written_in_small_chunks_round_trips(storage: LocalStorage) -> None:
    data = payload(3 * WRITE_BATCH_BYTES + 12_345)

    writer = await storage.open_writer(KEY, "application/pdf")
    for offset in range(0, len(data), 64 * 1024):
        await writer.write(data[offset : offset + 64 * 1024])
    await writer.commit()

    assert await read_all(storage, KEY) == data
    assert files_under(storage.root) == [KEY]  # no temporary file left


async def test_one_large_chunk_round_trips(storage: LocalStorage) -> None:
    data = payload(2 * WRITE_BATCH_BYTES + 1)

    await store(storage, KEY, data)

    assert (storage.root / KEY).read_bytes() == data


async def test_empty_object_can_be_stored(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.commit()

    assert await storage.exists(KEY)
    assert await read_all(storage, KEY) == b""


async def test_nothing_visible_before_commit(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.write(payload(2 * WRITE_BATCH_BYTES))

    assert not await storage.exists(KEY)
    assert not (storage.root / KEY).exists()
    with pytest.raises(FileNotFoundError):
        await read_all(storage, KEY)

    await writer.commit()

    assert await storage.exists(KEY)


async def test_commit_replaces_an_existing_object_whole(storage: LocalStorage) -> None:
    await store(storage, KEY, b"old contents")
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.write(b"new")

    assert await read_all(storage, KEY) == b"old contents"  # untouched until commit
    await writer.commit()
    assert await read_all(storage, KEY) == b"new"


async def test_abort_leaves_no_temporary_file_and_no_object(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.write(payload(WRITE_BATCH_BYTES + 10))
    assert any(TEMP_PREFIX in name for name in files_under(storage.root))

    await writer.abort()
    await writer.abort()  # twice is harmless

    assert files_under(storage.root) == []
    assert not await storage.exists(KEY)


async def test_cancelled_write_then_abort_leaves_nothing(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")

    async def upload() -> None:
        for _ in range(1000):
            await writer.write(payload(256 * 1024))
        await writer.commit()

    task = asyncio.create_task(upload())
    await asyncio.sleep(0.01)
    task.cancel()  # the client went away mid-body
    with pytest.raises(asyncio.CancelledError):
        await task
    await writer.abort()

    assert files_under(storage.root) == []


async def test_writer_refuses_use_after_commit(storage: LocalStorage) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.write(b"%PDF-1.7")
    await writer.commit()

    with pytest.raises(RuntimeError, match="committed"):
        await writer.write(b"more")
    await writer.abort()  # a no-op that does not undo the commit
    assert await storage.exists(KEY)


async def test_two_writers_of_the_same_key_do_not_share_a_temporary_file(
    storage: LocalStorage,
) -> None:
    first = await storage.open_writer(KEY, "application/pdf")
    second = await storage.open_writer(KEY, "application/pdf")
    await first.write(b"first")
    await second.write(b"second")

    await second.abort()
    await first.commit()

    assert await read_all(storage, KEY) == b"first"
    assert files_under(storage.root) == [KEY]


# --- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../outside.pdf",
        "raw/../../outside.pdf",
        "raw/../raw/doc.pdf",
        "/etc/passwd",
        "raw//doc.pdf",
        "raw/./doc.pdf",
        "raw/",
        "raw\\..\\doc.pdf",
        "raw/.tmp-doc.pdf.part",
        "raw/doc\x00.pdf",
    ],
)
async def test_keys_that_could_escape_the_root_are_refused(storage: LocalStorage, key: str) -> None:
    with pytest.raises(InvalidStorageKey):
        await storage.open_writer(key, "application/pdf")
    with pytest.raises(InvalidStorageKey):
        await storage.exists(key)
    with pytest.raises(InvalidStorageKey):
        await storage.delete(key)
    with pytest.raises(InvalidStorageKey):
        await read_all(storage, key)

    assert not (storage.root.parent / "outside.pdf").exists()


# --- reading, existence, deletion -----------------------------------------------------------


async def test_read_streams_in_bounded_chunks(storage: LocalStorage) -> None:
    data = payload(3 * READ_CHUNK_BYTES + 5)
    await store(storage, KEY, data)

    chunks = [chunk async for chunk in storage.read(KEY)]

    assert len(chunks) == 4
    assert all(len(chunk) <= READ_CHUNK_BYTES for chunk in chunks)
    assert b"".join(chunks) == data


@pytest.mark.parametrize(
    ("start", "end"),
    [(0, 0), (10, 19), (READ_CHUNK_BYTES - 3, READ_CHUNK_BYTES + 700_000), (999_990, 999_999)],
)
async def test_range_read_returns_the_inclusive_slice(
    storage: LocalStorage, start: int, end: int
) -> None:
    data = payload(1_000_000)
    await store(storage, KEY, data)

    assert await read_all(storage, KEY, ByteRange(start, end)) == data[start : end + 1]


async def test_read_of_a_missing_key_raises_file_not_found_without_the_path(
    storage: LocalStorage,
) -> None:
    with pytest.raises(FileNotFoundError) as caught:
        await read_all(storage, "raw/missing.pdf")

    assert str(storage.root) not in str(caught.value)


async def test_exists_and_delete(storage: LocalStorage) -> None:
    await store(storage, KEY, b"%PDF-1.7")
    assert await storage.exists(KEY)

    await storage.delete(KEY)

    assert not await storage.exists(KEY)
    await storage.delete(KEY)  # deleting a missing object is fine


# --- health and housekeeping ----------------------------------------------------------------


async def test_root_is_created_so_a_fresh_machine_is_ready(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "not" / "yet" / "there")

    await storage.check()

    assert storage.root.is_dir()


async def test_check_raises_storage_unavailable_when_the_root_is_not_a_writable_directory(
    tmp_path: Path,
) -> None:
    root = tmp_path / "storage"
    root.write_bytes(b"a file where the directory should be")
    storage = LocalStorage(root)

    with pytest.raises(StorageUnavailable) as caught:
        await storage.check()

    assert str(tmp_path) not in caught.value.message


async def test_abort_incomplete_uploads_sweeps_temporary_files_a_crash_left(
    storage: LocalStorage,
) -> None:
    writer = await storage.open_writer(KEY, "application/pdf")
    await writer.write(payload(WRITE_BATCH_BYTES))  # then the process "dies"
    await store(storage, "raw/doc_kept.pdf", b"kept")

    assert await storage.abort_incomplete_uploads(timedelta(hours=1)) == 0
    assert await storage.abort_incomplete_uploads(timedelta(seconds=-1)) == 1

    assert files_under(storage.root) == ["raw/doc_kept.pdf"]
    await writer.abort()  # the writer's own cleanup copes with the file being gone


async def test_abort_incomplete_uploads_keeps_to_its_prefix(storage: LocalStorage) -> None:
    raw = await storage.open_writer("raw/doc_a.pdf", "application/pdf")
    other = await storage.open_writer("exports/doc_b.pdf", "application/pdf")
    for writer in (raw, other):
        await writer.write(b"partial")  # then the process "dies"

    assert await storage.abort_incomplete_uploads(timedelta(seconds=-1), "raw/") == 1

    [left] = [name for name in files_under(storage.root) if "/.tmp-" in f"/{name}"]
    assert left.startswith("exports/")
    await raw.abort()
    await other.abort()


# --- listing --------------------------------------------------------------------------------


async def list_all(storage: LocalStorage, prefix: str) -> list[StoredObject]:
    """Every object the listing streams, sorted by key."""
    return sorted([item async for item in storage.list_objects(prefix)], key=lambda o: o.key)


async def test_list_objects_gives_committed_objects_under_the_prefix_with_size_and_time(
    storage: LocalStorage,
) -> None:
    before = datetime.now(UTC) - timedelta(seconds=2)
    await store(storage, "raw/doc_a.pdf", b"a" * 10)
    await store(storage, "raw/sub/doc_b.png", b"b" * 20)
    await store(storage, "rawish/doc_c.pdf", b"c")
    await store(storage, "exports/doc_d.pdf", b"d")
    in_progress = await storage.open_writer("raw/doc_e.pdf", "application/pdf")
    await in_progress.write(b"not yet")

    listed = await list_all(storage, "raw/")

    assert [(item.key, item.size) for item in listed] == [
        ("raw/doc_a.pdf", 10),
        ("raw/sub/doc_b.png", 20),
    ]
    assert all(before <= item.modified_at <= datetime.now(UTC) for item in listed)
    assert all(item.modified_at.tzinfo is not None for item in listed)
    assert [item.key for item in await list_all(storage, "raw")] == [
        "raw/doc_a.pdf",
        "raw/sub/doc_b.png",
        "rawish/doc_c.pdf",
    ]
    assert len(await list_all(storage, "")) == 4
    assert [item.key for item in await list_all(storage, "raw/doc_")] == ["raw/doc_a.pdf"]
    await in_progress.abort()


async def test_list_objects_of_a_missing_directory_is_empty(storage: LocalStorage) -> None:
    assert await list_all(storage, "raw/") == []


async def test_list_objects_streams_a_directory_larger_than_one_batch(
    storage: LocalStorage,
) -> None:
    directory = storage.root / "raw"
    directory.mkdir(parents=True)
    count = LIST_BATCH * 2 + 3
    for index in range(count):
        (directory / f"doc_{index:05d}.pdf").write_bytes(b"x")

    listed = await list_all(storage, "raw/")

    assert [item.key for item in listed] == [f"raw/doc_{index:05d}.pdf" for index in range(count)]


async def test_list_objects_refuses_a_prefix_that_leaves_the_root(storage: LocalStorage) -> None:
    with pytest.raises(InvalidStorageKey):
        await list_all(storage, "../")

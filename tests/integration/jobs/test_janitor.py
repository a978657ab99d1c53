"""The janitor on real PostgreSQL, with local files and with S3 (moto): what a crash leaves goes.

An upload stores its object, then commits its row; a crash in between leaves an object without a
row, and perhaps an unfinished write. The janitor removes both once older than
`JANITOR_ORPHAN_AGE_S`, and never an object whose row exists or that is younger than that.
"""

from __future__ import annotations

import asyncio
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    FixedClassifier,
    finished,
    get_document,
    jobs_of,
    running_worker,
    store_document,
    wait_for,
)
from upload_service.db.models import Document, IdempotencyKey, Job, new_doc_id
from upload_service.jobs.janitor import ROW_CHECK_BATCH, purge_expired_keys, remove_orphans
from upload_service.jobs.queue import utc_now
from upload_service.storage.base import Storage
from upload_service.storage.keys import raw_key
from upload_service.storage.local import TEMP_PREFIX, LocalStorage
from upload_service.storage.s3 import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

Sessions = async_sessionmaker[AsyncSession]
HOUR = 3600.0


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


async def write_object(storage: Storage, data: bytes = b"%PDF-1.4 orphan") -> str:
    """Store an object as an upload does, then "crash": no row is ever committed for it."""
    key = raw_key(new_doc_id(), ".pdf")
    writer = await storage.open_writer(key, "application/octet-stream")
    await writer.write(data)
    await writer.commit()
    return key


async def key_of_stored_document(sessions: Sessions, storage: Storage) -> str:
    """Store a document the whole way (object, then its row) and return its key."""
    item = await store_document(sessions, storage, b"%PDF-1.4 kept", queue=False)
    return (await get_document(sessions, item.doc_id)).storage_key


def age(path: Path, seconds: float) -> None:
    """Make a file look `seconds` old."""
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


async def janitor_ran(sessions: Sessions) -> Job:
    """Wait for the janitor job the worker scheduled at start to finish; return it."""
    [job] = await wait_for(
        lambda: jobs_of(sessions, kind="janitor"),
        lambda jobs: len(jobs) == 1 and finished(jobs[0]),
    )
    return job


async def test_scheduled_janitor_removes_old_orphans_and_keeps_rows_and_young_objects(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    with_row = await key_of_stored_document(pg_sessions, storage)
    old_orphan = await write_object(storage)
    young_orphan = await write_object(storage)
    not_ours = "raw/notes.pdf"
    (storage.root / not_ours).write_bytes(b"someone else's")
    unfinished = await storage.open_writer(raw_key(new_doc_id(), ".pdf"), "application/pdf")
    await unfinished.write(b"partial")  # then the process "dies"
    [temp_file] = (storage.root / "raw").glob(f"{TEMP_PREFIX}*")
    for path in (storage.path_for(with_row), storage.path_for(old_orphan), temp_file):
        age(path, 2 * HOUR)
    age(storage.root / not_ours, 2 * HOUR)

    settings = make_settings(janitor_orphan_age_s=HOUR, janitor_settle_s=0.1)
    async with running_worker(pg_sessions, storage, FixedClassifier(), settings):
        job = await janitor_ran(pg_sessions)

    assert job.status == "succeeded"
    assert not await storage.exists(old_orphan)
    assert not temp_file.exists()
    assert await storage.exists(with_row)
    assert await storage.exists(young_orphan)
    assert await storage.exists(not_ours)
    await unfinished.abort()


async def test_orphan_on_s3_is_kept_while_young_and_removed_once_older_than_the_threshold(
    pg_sessions: Sessions, pg_clean: AsyncEngine, s3_storage: S3Storage
) -> None:
    engine = pg_clean
    with_row = await key_of_stored_document(pg_sessions, s3_storage)
    orphan = await write_object(s3_storage)

    young = await remove_orphans(engine, s3_storage, older_than=timedelta(hours=1))
    assert (young.checked, young.removed) == (0, 0)
    assert await s3_storage.exists(orphan)

    # Two hours on, both objects are old: only the one without a row goes.
    later = await remove_orphans(
        engine, s3_storage, older_than=timedelta(hours=1), now=utc_now() + timedelta(hours=2)
    )
    assert (later.checked, later.removed) == (2, 1)
    assert not await s3_storage.exists(orphan)
    assert await s3_storage.exists(with_row)


async def test_scheduled_janitor_aborts_old_multipart_uploads_on_s3(
    pg_sessions: Sessions,
    s3_storage: S3Storage,
    s3_client: S3Client,
    s3_bucket: str,
    make_settings: MakeSettings,
) -> None:
    with_row = await key_of_stored_document(pg_sessions, s3_storage)
    young_orphan = await write_object(s3_storage)
    # moto dates every multipart upload in 2010: this one is years past the threshold.
    s3_client.create_multipart_upload(Bucket=s3_bucket, Key=raw_key(new_doc_id(), ".pdf"))

    settings = make_settings(janitor_orphan_age_s=HOUR)
    async with running_worker(pg_sessions, s3_storage, FixedClassifier(), settings):
        job = await janitor_ran(pg_sessions)

    assert job.status == "succeeded"
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert await s3_storage.exists(with_row)
    assert await s3_storage.exists(young_orphan)


@pytest.fixture(params=["local", "s3"])
def any_storage(request: pytest.FixtureRequest, storage: LocalStorage) -> Storage:
    """Each storage backend in turn."""
    if request.param == "s3":
        s3: S3Storage = request.getfixturevalue("s3_storage")
        return s3
    return storage


async def test_crash_between_object_and_row_leaves_nothing_after_the_janitor(
    pg_sessions: Sessions, any_storage: Storage, make_settings: MakeSettings
) -> None:
    with_row = await key_of_stored_document(pg_sessions, any_storage)
    crashed = await write_object(any_storage)

    settings = make_settings(janitor_orphan_age_s=0)
    async with running_worker(pg_sessions, any_storage, FixedClassifier(), settings):
        job = await janitor_ran(pg_sessions)

    assert job.status == "succeeded"
    assert not await any_storage.exists(crashed)
    assert await any_storage.exists(with_row)
    assert [item.key async for item in any_storage.list_objects("raw/")] == [with_row]


async def test_rows_are_looked_up_a_batch_of_objects_at_a_time(
    pg_sessions: Sessions, pg_clean: AsyncEngine, storage: LocalStorage
) -> None:
    with_rows = [await key_of_stored_document(pg_sessions, storage) for _ in range(3)]
    orphans = [raw_key(new_doc_id(), ".pdf") for _ in range(2 * ROW_CHECK_BATCH + 1)]
    for key in orphans:
        storage.path_for(key).write_bytes(b"orphan")
    lookups: list[str] = []

    def count_lookups(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "FROM documents" in statement:
            lookups.append(statement)

    event.listen(pg_clean.sync_engine, "before_cursor_execute", count_lookups)
    try:
        sweep = await remove_orphans(pg_clean, storage, older_than=timedelta(0))
    finally:
        event.remove(pg_clean.sync_engine, "before_cursor_execute", count_lookups)

    assert (sweep.checked, sweep.removed) == (len(orphans) + 3, len(orphans))
    assert len(lookups) == 3  # 1,004 objects, 500 a lookup
    assert sorted([item.key async for item in storage.list_objects("raw/")]) == sorted(with_rows)


async def test_a_multipart_upload_still_receiving_parts_is_not_aborted_however_old(
    s3_storage: S3Storage, s3_client: S3Client, s3_bucket: str
) -> None:
    key = raw_key(new_doc_id(), ".pdf")
    # moto dates the upload's start in 2010: only its parts say it is alive.
    upload_id = s3_client.create_multipart_upload(Bucket=s3_bucket, Key=key)["UploadId"]
    s3_client.upload_part(
        Bucket=s3_bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=b"x" * 1024
    )

    assert await s3_storage.abort_incomplete_uploads(timedelta(hours=1), "raw/") == 0
    [alive] = s3_client.list_multipart_uploads(Bucket=s3_bucket)["Uploads"]
    assert alive["UploadId"] == upload_id

    # Idle for longer than the threshold (here: any time at all): aborted.
    assert await s3_storage.abort_incomplete_uploads(timedelta(0), "raw/") == 1
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


async def test_an_old_looking_object_whose_row_commits_meanwhile_is_kept(
    pg_sessions: Sessions, pg_clean: AsyncEngine, s3_storage: S3Storage
) -> None:
    # S3 dates a multipart object from its upload's start: a two-hour upload that has just
    # completed looks two hours old while its row is a moment from committing.
    key = await write_object(s3_storage)
    doc_id = key.removeprefix("raw/").removesuffix(".pdf")
    sweep = asyncio.create_task(
        remove_orphans(
            pg_clean,
            s3_storage,
            older_than=timedelta(hours=1),
            now=utc_now() + timedelta(hours=2),
            settle_s=2.0,
        )
    )
    await asyncio.sleep(0.5)  # The janitor has looked once and found no row.
    await record_row(pg_sessions, doc_id, key)

    assert (await sweep).removed == 0
    assert await s3_storage.exists(key)


async def record_row(sessions: Sessions, doc_id: str, key: str) -> None:
    async with sessions.begin() as session:
        session.add(
            Document(
                id=doc_id,
                owner="user-a",
                filename="late.pdf",
                content_type="application/pdf",
                size_bytes=15,
                sha256="0" * 64,
                storage_key=key,
            )
        )


async def test_the_janitor_forgets_idempotency_keys_after_24_hours(
    pg_sessions: Sessions, pg_clean: AsyncEngine, storage: LocalStorage
) -> None:
    fresh = await key_of_stored_document(pg_sessions, storage)
    stale = await key_of_stored_document(pg_sessions, storage)
    async with pg_sessions.begin() as session:
        for name, key in (("fresh", fresh), ("stale", stale)):
            session.add(
                IdempotencyKey(
                    owner="user-a",
                    key=name,
                    sha256="0" * 64,
                    doc_id=key.removeprefix("raw/").removesuffix(".pdf"),
                    created_at=utc_now() - timedelta(hours=25 if name == "stale" else 23),
                )
            )

    assert await purge_expired_keys(pg_clean) == 1
    async with pg_sessions() as session:
        kept = (await session.scalars(select(IdempotencyKey.key))).all()
    assert kept == ["fresh"]

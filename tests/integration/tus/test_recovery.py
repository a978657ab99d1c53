"""State in the database and storage, not in a process: another process, a crash, the janitor.

Two app instances on one database and one storage directory stand for two replicas (or one
restarted): each has its own, empty, in-process cache of running checks.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, running_app
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.jobs.support import (
    FixedClassifier,
    finished,
    jobs_of,
    running_worker,
    wait_for,
)
from tests.integration.tus.conftest import count, create_upload, head, patch, upload_row
from upload_service.db.models import Document, Job, Upload, utcnow
from upload_service.jobs.upload_expiry import expire_uploads, purge_ended_uploads
from upload_service.main import create_app
from upload_service.storage.local import LocalStorage

CONTENT = pdf_bytes(pad=400_000)
Pair = tuple[httpx.AsyncClient, httpx.AsyncClient]
HALF = len(CONTENT) // 2


def rehashed() -> float:
    return REGISTRY.get_sample_value("tus_rehash_total") or 0.0


@pytest.fixture
async def two_apps(make_settings: MakeSettings) -> AsyncIterator[Pair]:
    settings = make_settings()
    async with running_app(create_app(settings)) as one, running_app(create_app(settings)) as two:
        yield one, two


async def test_an_upload_begun_on_one_process_is_finished_on_another_with_the_right_sha256(
    two_apps: Pair,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
) -> None:
    one, two = two_apps
    location = await create_upload(one, auth_headers, len(CONTENT))
    assert (await patch(one, auth_headers, location, 0, CONTENT[:HALF])).status_code == 204
    before = rehashed()
    # The other process has no running check for this upload: it verifies the object once.
    done = await patch(two, auth_headers, location, HALF, CONTENT[HALF:])
    assert done.status_code == 204, done.text
    assert rehashed() == before + 1
    document = (await two.get(done.headers["document-location"], headers=auth_headers)).json()
    assert document["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert document["content_type"] == "application/pdf"
    assert await count(pg_clean, Document) == 1
    assert await count(pg_clean, Job) == 1


async def test_alternating_processes_still_make_one_right_document(
    two_apps: Pair,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
) -> None:
    clients = two_apps
    location = await create_upload(clients[0], auth_headers, len(CONTENT))
    step, offset, turn = 64 * 1024, 0, 0
    while offset < len(CONTENT):
        end = min(offset + step, len(CONTENT))
        chunk = CONTENT[offset:end]
        response = await patch(clients[turn % 2], auth_headers, location, offset, chunk)
        assert response.status_code == 204, response.text
        offset, turn = end, turn + 1
    document = (
        await clients[0].get(response.headers["document-location"], headers=auth_headers)
    ).json()
    assert document["sha256"] == hashlib.sha256(CONTENT).hexdigest()


async def test_one_process_serving_every_patch_needs_no_second_read(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    location = await create_upload(client, auth_headers, len(CONTENT))
    before = rehashed()
    await patch(client, auth_headers, location, 0, CONTENT[:HALF])
    done = await patch(client, auth_headers, location, HALF, CONTENT[HALF:])
    assert done.status_code == 204
    assert rehashed() == before  # The running check went from the first PATCH to the last.


async def _crash_with_every_byte_saved(
    engine: AsyncEngine, storage_root: Path, location: str, *, finished: bool, lease_s: float
) -> Upload:
    """Stand for a process that saved the last bytes and moved the offset, then died."""
    row = await upload_row(engine, location)
    assert row is not None
    partial = storage_root / ".partial" / row.storage_key
    with partial.open("ab") as file:
        file.write(CONTENT[HALF:])
    if finished:  # It even got as far as renaming the object into place.
        final = storage_root / row.storage_key
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(partial, final)
    async with engine.begin() as conn:
        await conn.execute(
            update(Upload)
            .where(Upload.id == row.id)
            .values(
                offset=len(CONTENT),
                state="finishing",
                locked_by="a-process-that-died",
                locked_until=utcnow() + timedelta(seconds=lease_s),
            )
        )
    return row


@pytest.mark.parametrize("finished", [False, True], ids=["bytes-saved", "object-in-place"])
async def test_a_crash_before_the_document_is_recorded_is_finished_by_the_next_head(
    make_settings: MakeSettings,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    tmp_path: Path,
    finished: bool,
) -> None:
    settings = make_settings()
    storage_root = tmp_path / "storage"
    async with running_app(create_app(settings)) as before_crash:
        location = await create_upload(before_crash, auth_headers, len(CONTENT))
        await patch(before_crash, auth_headers, location, 0, CONTENT[:HALF])
    await _crash_with_every_byte_saved(
        pg_clean, storage_root, location, finished=finished, lease_s=-1
    )
    async with running_app(create_app(settings)) as restarted:
        status = await head(restarted, auth_headers, location)
        assert status.status_code == 200
        assert status.headers["upload-offset"] == str(len(CONTENT))
        document = (
            await restarted.get(status.headers["document-location"], headers=auth_headers)
        ).json()
        assert document["sha256"] == hashlib.sha256(CONTENT).hexdigest()
        # Asked again: the same document, nothing new.
        again = await head(restarted, auth_headers, location)
        assert again.headers["document-location"] == status.headers["document-location"]
    assert await count(pg_clean, Document) == 1
    assert await count(pg_clean, Job) == 1


async def test_a_finishing_upload_whose_lease_is_alive_is_left_to_its_holder(
    make_settings: MakeSettings,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    tmp_path: Path,
) -> None:
    async with running_app(create_app(make_settings())) as client:
        location = await create_upload(client, auth_headers, len(CONTENT))
        await patch(client, auth_headers, location, 0, CONTENT[:HALF])
        await _crash_with_every_byte_saved(
            pg_clean, tmp_path / "storage", location, finished=False, lease_s=60
        )
        status = await head(client, auth_headers, location)
        assert status.headers["upload-offset"] == str(len(CONTENT))
        assert "document-location" not in status.headers
        assert await count(pg_clean, Document) == 0
        # A repeated last PATCH does not record it behind the holder's back either.
        again = await patch(client, auth_headers, location, HALF, CONTENT[HALF:])
        assert again.status_code == 409
        assert await count(pg_clean, Document) == 0


async def _expire(engine: AsyncEngine, location: str) -> None:
    row = await upload_row(engine, location)
    assert row is not None
    async with engine.begin() as conn:
        await conn.execute(
            update(Upload)
            .where(Upload.id == row.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


async def test_an_expired_upload_answers_410_and_the_janitor_leaves_nothing_of_it(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    tmp_path: Path,
) -> None:
    storage_root = tmp_path / "storage"
    location = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, location, 0, CONTENT[:HALF])
    kept = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, kept, 0, CONTENT[:1000])
    await _expire(pg_clean, location)
    assert (await head(client, auth_headers, location)).status_code == 410
    assert await expire_uploads(pg_clean, LocalStorage(storage_root)) == 1
    row = await upload_row(pg_clean, location)
    assert row is not None
    assert row.state == "expired"
    partials = [p for p in (storage_root / ".partial").rglob("*") if p.is_file()]
    assert len(partials) == 1  # Only the live upload's.
    assert (await head(client, auth_headers, location)).status_code == 410
    assert (await head(client, auth_headers, kept)).headers["upload-offset"] == "1000"


async def test_a_patch_that_extended_the_expiry_is_not_expired_by_a_janitor_that_saw_it_late(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine, tmp_path: Path
) -> None:
    location = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, location, 0, CONTENT[:1000])
    # The janitor's clock says the upload is due; the row says it was extended since.
    later = utcnow() - timedelta(hours=1)
    assert await expire_uploads(pg_clean, LocalStorage(tmp_path / "storage"), now=later) == 0
    assert (await head(client, auth_headers, location)).status_code == 200


async def test_the_scheduled_janitor_expires_old_uploads_and_spares_live_ones_however_old(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    pg_sessions: async_sessionmaker[AsyncSession],
    make_settings: MakeSettings,
    tmp_path: Path,
) -> None:
    storage_root = tmp_path / "storage"
    expired = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, expired, 0, CONTENT[:1000])
    await _expire(pg_clean, expired)
    # A live upload stuck `finishing` with its object in place, which looks days old.
    finishing = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, finishing, 0, CONTENT[:HALF])
    row = await _crash_with_every_byte_saved(
        pg_clean, storage_root, finishing, finished=True, lease_s=-1
    )
    old = time.time() - 3 * 86400
    os.utime(storage_root / row.storage_key, (old, old))

    settings = make_settings(janitor_orphan_age_s=3600.0)
    async with running_worker(pg_sessions, LocalStorage(storage_root), FixedClassifier(), settings):
        [job] = await wait_for(
            lambda: jobs_of(pg_sessions, kind="janitor"),
            lambda jobs: len(jobs) == 1 and finished(jobs[0]),
        )
    assert job.status == "succeeded"
    assert (await head(client, auth_headers, expired)).status_code == 410
    assert (storage_root / row.storage_key).exists()  # Spared: its upload is alive.
    # ... and the upload still completes into a document.
    status = await head(client, auth_headers, finishing)
    assert "document-location" in status.headers


async def test_ended_uploads_are_forgotten_a_week_later(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    ended = await create_upload(client, auth_headers, len(CONTENT))
    deleted = await client.delete(ended, headers={**auth_headers, "Tus-Resumable": "1.0.0"})
    assert deleted.status_code == 204
    live = await create_upload(client, auth_headers, len(CONTENT))
    assert await purge_ended_uploads(pg_clean) == 0  # Ended just now: still answers 410.
    assert (await head(client, auth_headers, ended)).status_code == 410
    assert await purge_ended_uploads(pg_clean, now=utcnow() + timedelta(days=8)) == 1
    assert (await head(client, auth_headers, ended)).status_code == 404
    assert (await head(client, auth_headers, live)).status_code == 200

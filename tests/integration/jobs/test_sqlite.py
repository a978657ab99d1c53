"""The embedded default: the same queue and worker on SQLite, in one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    FixedClassifier,
    FlakyClassifier,
    finished,
    get_document,
    running_worker,
    store_document,
    wait_for_job,
)
from upload_service.db.migrate import upgrade_to_head
from upload_service.db.models import Job
from upload_service.db.session import create_engine, create_session_factory
from upload_service.errors import ClassifierFailed
from upload_service.jobs.leases import claim_jobs, mark_succeeded
from upload_service.jobs.queue import enqueue, utc_now
from upload_service.jobs.scheduler import schedule_janitor
from upload_service.storage.local import LocalStorage


@pytest.fixture
async def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'jobs.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    return url


@pytest.fixture
async def sqlite_sessions(sqlite_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(sqlite_url)
    yield create_session_factory(engine)
    await engine.dispose()


async def test_claim_and_complete_on_sqlite(
    sqlite_sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sqlite_sessions.begin() as session:
        ids = {(await enqueue(session, kind="janitor")).id for _ in range(5)}
    claimed: list[str] = []

    async def claimer(name: str) -> None:
        for _ in range(10):
            async with sqlite_sessions.begin() as session:
                jobs = await claim_jobs(session, worker_id=name, limit=2, lease_s=30)
                await mark_succeeded(session, [job.id for job in jobs], worker_id=name)
            claimed.extend(job.id for job in jobs)

    await asyncio.gather(claimer("a"), claimer("b"))
    assert sorted(claimed) == sorted(ids)


async def test_worker_classifies_on_sqlite(
    sqlite_url: str,
    sqlite_sessions: async_sessionmaker[AsyncSession],
    make_settings: MakeSettings,
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    items = [
        await store_document(sqlite_sessions, storage, f"%PDF-1.4 {n}".encode()) for n in range(20)
    ]
    settings = make_settings(database_url=sqlite_url, worker_concurrency=4)
    async with running_worker(sqlite_sessions, storage, FixedClassifier("letter"), settings):
        for item in items:
            assert item.task_id is not None
            assert (await wait_for_job(sqlite_sessions, item.task_id, finished)).status == (
                "succeeded"
            )
    for item in items:
        document = await get_document(sqlite_sessions, item.doc_id)
        assert document.status == "complete"
        assert document.classification is not None
        assert document.classification["label"] == "letter"

    # A crash is retried as a counted attempt; an unavailable classifier is waited for.
    crashing = FlakyClassifier(1, error=lambda: ClassifierFailed("INTERNAL: crashed"))
    unavailable = FlakyClassifier(2)
    for classifier, attempts in ((crashing, 2), (unavailable, 1)):
        flaky = await store_document(sqlite_sessions, storage, b"%PDF-1.4 flaky")
        async with running_worker(sqlite_sessions, storage, classifier, settings):
            assert flaky.task_id is not None
            job = await wait_for_job(sqlite_sessions, flaky.task_id, finished)
        assert (job.status, job.attempts) == ("succeeded", attempts)


async def test_janitor_is_scheduled_once_per_slot_on_sqlite(sqlite_url: str) -> None:
    engine = create_engine(sqlite_url)
    try:
        now = utc_now()
        async with engine.begin() as conn:
            first = await schedule_janitor(conn, interval_s=3600, now=now)
            while_queued = await schedule_janitor(conn, interval_s=3600, now=now)
            await conn.execute(update(Job).values(status="succeeded"))
            # Nothing active any more: only the slot's fixed id (ON CONFLICT) stops a second job.
            after_it_ran = await schedule_janitor(conn, interval_s=3600, now=now)
    finally:
        await engine.dispose()

    assert first is not None
    assert (while_queued, after_it_ran) == (None, None)

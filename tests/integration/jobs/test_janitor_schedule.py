"""The janitor's schedule on real PostgreSQL: one janitor job per slot, however many workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    FixedClassifier,
    finished,
    jobs_of,
    running_worker,
    store_document,
    wait_for,
    wait_for_job,
)
from upload_service.db.models import Job
from upload_service.jobs.queue import utc_now
from upload_service.jobs.scheduler import janitor_job_id, schedule_janitor
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]
# Slots this long never end during a test: "one job per slot" becomes "one job".
ONE_LONG_SLOT_S = 1e9


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


async def test_racing_schedulers_queue_one_janitor_job_for_the_slot(
    pg_clean: AsyncEngine, pg_sessions: Sessions
) -> None:
    now = utc_now()

    async def schedule() -> str | None:
        async with pg_clean.begin() as conn:
            return await schedule_janitor(conn, interval_s=3600, now=now)

    answers = await asyncio.gather(*(schedule() for _ in range(8)))

    slot = int(now.timestamp() // 3600)
    assert [answer for answer in answers if answer is not None] == [janitor_job_id(slot)]
    assert [job.id for job in await jobs_of(pg_sessions, kind="janitor")] == [janitor_job_id(slot)]


async def test_no_janitor_job_is_added_while_one_is_queued_or_running(
    pg_clean: AsyncEngine, pg_sessions: Sessions
) -> None:
    now = utc_now()
    next_slot = now + timedelta(hours=1)

    async with pg_clean.begin() as conn:
        first = await schedule_janitor(conn, interval_s=3600, now=now)
        assert first is not None
        # The next slot starts while the first run is still waiting or running.
        assert await schedule_janitor(conn, interval_s=3600, now=next_slot) is None
        await conn.execute(update(Job).where(Job.id == first).values(status="running"))
        assert await schedule_janitor(conn, interval_s=3600, now=next_slot) is None
        await conn.execute(update(Job).where(Job.id == first).values(status="succeeded"))
        second = await schedule_janitor(conn, interval_s=3600, now=next_slot)
        # A slot whose job already ran does not get a second one.
        assert await schedule_janitor(conn, interval_s=3600, now=now) is None

    assert second not in (None, first)
    assert len(await jobs_of(pg_sessions, kind="janitor")) == 2


async def test_two_workers_started_together_schedule_one_janitor_job_per_slot(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    settings = make_settings(janitor_interval_s=ONE_LONG_SLOT_S)
    slot = int(utc_now().timestamp() // ONE_LONG_SLOT_S)
    async with (
        running_worker(pg_sessions, storage, FixedClassifier(), settings, janitor_check_s=0.02),
        running_worker(pg_sessions, storage, FixedClassifier(), settings, janitor_check_s=0.02),
    ):
        await wait_for(
            lambda: jobs_of(pg_sessions, kind="janitor"),
            lambda jobs: len(jobs) == 1 and finished(jobs[0]),
        )
        await asyncio.sleep(0.5)  # some twenty more checks by each worker
        jobs = await jobs_of(pg_sessions, kind="janitor")

    assert [(job.id, job.status, job.attempts) for job in jobs] == [
        (janitor_job_id(slot), "succeeded", 1)
    ]


async def test_a_janitor_job_runs_again_in_each_new_slot(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    settings = make_settings(janitor_interval_s=0.3)
    async with running_worker(
        pg_sessions, storage, FixedClassifier(), settings, janitor_check_s=0.02
    ):
        jobs = await wait_for(
            lambda: jobs_of(pg_sessions, kind="janitor"),
            lambda jobs: len(jobs) >= 3 and all(finished(job) for job in jobs),
        )

    assert {job.status for job in jobs} == {"succeeded"}
    slots = [int(job.id.removeprefix("task_janitor_")) for job in jobs]
    assert len(set(slots)) == len(slots)


async def test_interval_zero_schedules_no_janitor_job(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    settings = make_settings(janitor_interval_s=0)
    async with running_worker(
        pg_sessions, storage, FixedClassifier(), settings, janitor_check_s=0.02
    ):
        assert item.task_id is not None
        await wait_for_job(pg_sessions, item.task_id, finished)
        await asyncio.sleep(0.2)

    assert await jobs_of(pg_sessions, kind="janitor") == []

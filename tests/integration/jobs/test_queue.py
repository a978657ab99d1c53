"""The queue on real PostgreSQL: enqueue in the caller's transaction, claim, lease, retry, fail."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.integration.jobs.support import get_document, get_job, store_document
from upload_service.db.models import DocumentEvent
from upload_service.jobs.leases import (
    claim_jobs,
    mark_failed,
    mark_succeeded,
    release_jobs,
    renew_leases,
    requeue_expired,
    schedule_retry,
)
from upload_service.jobs.processing import claim_and_prepare
from upload_service.jobs.queue import enqueue, utc_now
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]


async def _enqueue(sessions: Sessions, count: int = 1, **kwargs: Any) -> list[str]:
    async with sessions.begin() as session:
        jobs = [await enqueue(session, kind="janitor", **kwargs) for _ in range(count)]
    return [job.id for job in jobs]


async def test_enqueued_job_is_claimed_and_completed(pg_sessions: Sessions) -> None:
    [job_id] = await _enqueue(pg_sessions, payload={"x": 1}, correlation_id="corr-1")

    async with pg_sessions.begin() as session:
        [claimed] = await claim_jobs(session, worker_id="w1", limit=5, lease_s=30)
    assert (claimed.id, claimed.kind, claimed.payload) == (job_id, "janitor", {"x": 1})
    assert claimed.attempts == 1
    assert claimed.correlation_id == "corr-1"
    row = await get_job(pg_sessions, job_id)
    assert (row.status, row.locked_by) == ("running", "w1")
    assert row.locked_until is not None
    assert row.locked_until > utc_now() + timedelta(seconds=25)

    async with pg_sessions.begin() as session:
        assert await mark_succeeded(session, [job_id], worker_id="w1") == {job_id}
    row = await get_job(pg_sessions, job_id)
    assert (row.status, row.locked_by, row.locked_until) == ("succeeded", None, None)


async def test_enqueue_commits_or_rolls_back_with_the_callers_transaction(
    pg_sessions: Sessions,
) -> None:
    async with pg_sessions() as session:
        await enqueue(session, kind="janitor")
        await session.flush()
        async with pg_sessions.begin() as other:
            assert await claim_jobs(other, worker_id="w", limit=5, lease_s=30) == []
        await session.rollback()
    async with pg_sessions.begin() as session:
        assert await claim_jobs(session, worker_id="w", limit=5, lease_s=30) == []


async def test_a_job_due_later_is_not_claimed_before_its_time(pg_sessions: Sessions) -> None:
    await _enqueue(pg_sessions, run_at=utc_now() + timedelta(minutes=5))
    async with pg_sessions.begin() as session:
        assert await claim_jobs(session, worker_id="w", limit=5, lease_s=30) == []


async def test_concurrent_claimers_never_get_the_same_job(pg_sessions: Sessions) -> None:
    ids = set(await _enqueue(pg_sessions, 300))
    claims: list[list[str]] = []

    async def claimer(name: str) -> None:
        for _ in range(200):  # bounded: 300 jobs / 8 claimers / up to 5 each
            async with pg_sessions.begin() as session:
                jobs = await claim_jobs(session, worker_id=name, limit=5, lease_s=30)
                # Hold the row locks a moment, so the other claimers really meet them.
                await asyncio.sleep(0.001)
            if not jobs:
                return
            claims.append([job.id for job in jobs])

    await asyncio.gather(*(claimer(f"w{i}") for i in range(8)))
    claimed = [job_id for batch in claims for job_id in batch]
    assert len(claimed) == len(set(claimed)) == 300
    assert set(claimed) == ids


async def test_expired_lease_is_requeued_and_claimed_by_another_worker(
    pg_sessions: Sessions,
) -> None:
    [job_id] = await _enqueue(pg_sessions)
    async with pg_sessions.begin() as session:
        await claim_jobs(session, worker_id="dead", limit=1, lease_s=0.2)
        assert await requeue_expired(session) == []  # the lease still holds
    await asyncio.sleep(0.3)

    async with pg_sessions.begin() as session:
        assert await requeue_expired(session) == [job_id]
        [again] = await claim_jobs(session, worker_id="alive", limit=1, lease_s=30)
    assert again.attempts == 2
    # The dead worker, were it to come back, can no longer record anything.
    async with pg_sessions.begin() as session:
        assert await mark_succeeded(session, [job_id], worker_id="dead") == set()
        assert await renew_leases(session, worker_id="dead", job_ids=[job_id], lease_s=30) == set()
    assert (await get_job(pg_sessions, job_id)).locked_by == "alive"


async def test_renewal_extends_the_lease(pg_sessions: Sessions) -> None:
    [job_id] = await _enqueue(pg_sessions)
    async with pg_sessions.begin() as session:
        await claim_jobs(session, worker_id="w", limit=1, lease_s=1)
        assert await renew_leases(session, worker_id="w", job_ids=[job_id], lease_s=60) == {job_id}
    row = await get_job(pg_sessions, job_id)
    assert row.locked_until is not None
    assert row.locked_until > utc_now() + timedelta(seconds=50)


async def test_retry_puts_the_job_back_later_with_its_error(pg_sessions: Sessions) -> None:
    [job_id] = await _enqueue(pg_sessions)
    async with pg_sessions.begin() as session:
        [job] = await claim_jobs(session, worker_id="w", limit=1, lease_s=30)
        assert await schedule_retry(session, job, worker_id="w", error="boom", delay_s=60)
    row = await get_job(pg_sessions, job_id)
    assert (row.status, row.attempts, row.last_error, row.locked_by) == ("queued", 1, "boom", None)
    assert row.run_at > utc_now() + timedelta(seconds=50)
    async with pg_sessions.begin() as session:
        assert await claim_jobs(session, worker_id="w", limit=1, lease_s=30) == []


async def test_failed_job_keeps_its_error(pg_sessions: Sessions) -> None:
    [job_id] = await _enqueue(pg_sessions)
    async with pg_sessions.begin() as session:
        [job] = await claim_jobs(session, worker_id="w", limit=1, lease_s=30)
        assert not await mark_failed(session, job, worker_id="other", error="x")
        assert await mark_failed(session, job, worker_id="w", error="it broke")
    row = await get_job(pg_sessions, job_id)
    assert (row.status, row.last_error) == ("failed", "it broke")


async def test_released_job_is_claimable_at_once_and_its_attempt_not_counted(
    pg_sessions: Sessions,
) -> None:
    [job_id] = await _enqueue(pg_sessions)
    async with pg_sessions.begin() as session:
        await claim_jobs(session, worker_id="w", limit=1, lease_s=30)
        [released] = await release_jobs(session, worker_id="w", job_ids=[job_id])
    assert released.id == job_id
    async with pg_sessions.begin() as session:
        [again] = await claim_jobs(session, worker_id="w2", limit=1, lease_s=30)
    assert again.attempts == 1


async def test_a_claim_starts_its_classify_jobs_documents_in_the_same_statement(
    pg_sessions: Sessions, pg_clean: AsyncEngine, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", owner="alice")
    async with pg_sessions.begin() as session:  # A second classify job of the same document.
        await enqueue(session, kind="classify", doc_id=item.doc_id, owner="alice")
    [janitor_id] = await _enqueue(pg_sessions)

    async with pg_clean.begin() as conn:
        # While the classifier's breaker is open, classify jobs (and documents) stay put.
        skipped, none = await claim_and_prepare(
            conn, worker_id="w", limit=10, lease_s=30, skip_kind="classify"
        )
    assert ([job.id for job in skipped], none) == ([janitor_id], {})
    assert (await get_document(pg_sessions, item.doc_id)).status == "queued"

    async with pg_clean.begin() as conn:
        jobs, subjects = await claim_and_prepare(conn, worker_id="w", limit=10, lease_s=30)
    assert [job.kind for job in jobs] == ["classify", "classify"]
    assert all(job.attempts == 1 for job in jobs)
    # Both jobs see the document, which went `processing` once: one event.
    assert {job_id: subject and subject.doc_id for job_id, subject in subjects.items()} == {
        job.id: item.doc_id for job in jobs
    }
    assert (await get_document(pg_sessions, item.doc_id)).status == "processing"
    async with pg_sessions() as session:
        events = (await session.scalars(select(DocumentEvent).order_by(DocumentEvent.id))).all()
    assert [(e.doc_id, e.data["status"]) for e in events] == [(item.doc_id, "processing")]

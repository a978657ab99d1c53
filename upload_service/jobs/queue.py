"""The durable job queue: rows in the `jobs` table, claimed under a lease, retried with backoff.

A claim is one statement: `SELECT … FOR UPDATE SKIP LOCKED` picks due jobs no other worker holds
and the surrounding `UPDATE … RETURNING` marks them `running` under a lease (`locked_until`), so
two workers never hold the same job. A live worker renews its leases; a dead worker's jobs are
put back in the queue once their lease has run out. SQLite has no row locks (the compiler drops
`FOR UPDATE`), but it has one writer at a time, so the same `UPDATE … RETURNING` is atomic there.

Every state change after the claim is conditional on `locked_by` still naming the worker and the
job still `running`: a worker that lost its lease can never overwrite the new owner's outcome.
Times are the workers' clocks (UTC), compared with a lease measured in tens of seconds.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import CursorResult, Row, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from upload_service.context import correlation_id_var
from upload_service.db.models import Job, new_task_id

DEFAULT_MAX_ATTEMPTS = 5
MAX_ERROR_CHARS = 1000


class JobKind(StrEnum):
    """What a job does; the worker has one handler per kind."""

    CLASSIFY = "classify"
    NOTIFY = "notify"
    PURGE = "purge"
    JANITOR = "janitor"


class JobStatus(StrEnum):
    """A job's lifecycle: queued → running → succeeded | failed (or queued again to retry)."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


ACTIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job as its worker sees it after the claim; `attempts` includes this attempt."""

    id: str
    kind: str
    doc_id: str | None
    owner: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    correlation_id: str | None
    run_at: datetime

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure of this attempt ends the job."""
        return self.attempts >= self.max_attempts


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": a delay in [ceiling / 2, ceiling].

    The ceiling doubles with each attempt from `base_s` up to `cap_s`; the random half spreads
    the retries of jobs that failed together (a classifier outage) so they do not return at once.
    """

    base_s: float = 5.0
    cap_s: float = 300.0

    def ceiling_s(self, attempts: int) -> float:
        """The longest delay after the `attempts`-th failed attempt."""
        exponent = min(max(attempts, 1) - 1, 60)
        return float(min(self.cap_s, self.base_s * 2.0**exponent))

    def delay_s(self, attempts: int, rng: random.Random | None = None) -> float:
        """A random delay in [ceiling / 2, ceiling] after the `attempts`-th failed attempt."""
        ceiling = self.ceiling_s(attempts)
        draw = (rng or random).random()
        return ceiling / 2 + draw * ceiling / 2


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


_CLAIMED_COLUMNS = (
    Job.id,
    Job.kind,
    Job.doc_id,
    Job.owner,
    Job.payload,
    Job.attempts,
    Job.max_attempts,
    Job.correlation_id,
    Job.run_at,
)


def _claimed(row: Row[Any]) -> ClaimedJob:
    return ClaimedJob(
        id=row.id,
        kind=row.kind,
        doc_id=row.doc_id,
        owner=row.owner,
        payload=dict(row.payload or {}),
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        correlation_id=row.correlation_id,
        run_at=row.run_at,
    )


def _rowcount(result: object) -> int:
    assert isinstance(result, CursorResult)
    return int(result.rowcount)


async def enqueue(
    session: AsyncSession,
    *,
    kind: str,
    doc_id: str | None = None,
    owner: str | None = None,
    payload: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    run_at: datetime | None = None,
) -> Job:
    """Add a queued job to the caller's session, so it commits (or not) with the caller's work.

    Without `correlation_id`, the job carries the current request's correlation id.
    """
    now = utc_now()
    job = Job(
        id=new_task_id(),
        kind=str(kind),
        doc_id=doc_id,
        owner=owner,
        payload=dict(payload or {}),
        status=JobStatus.QUEUED.value,
        attempts=0,
        max_attempts=max_attempts,
        run_at=run_at or now,
        locked_until=None,
        locked_by=None,
        last_error=None,
        correlation_id=correlation_id if correlation_id is not None else correlation_id_var.get(),
        created_at=now,
        updated_at=now,
    )
    session.add(job)
    return job


async def claim_jobs(
    session: AsyncSession,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs for `worker_id`, oldest first, each under a fresh lease."""
    now = now or utc_now()
    due = (
        select(Job.id)
        .where(Job.status == JobStatus.QUEUED.value, Job.run_at <= now)
        .order_by(Job.run_at)
        .limit(limit)
        # Rows another worker is claiming right now are skipped, not waited for.
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    statement = (
        update(Job)
        .where(Job.id.in_(select(due.c.id)))
        .values(
            status=JobStatus.RUNNING.value,
            attempts=Job.attempts + 1,
            locked_until=now + timedelta(seconds=lease_s),
            locked_by=worker_id,
            updated_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    return sorted((_claimed(row) for row in rows), key=lambda job: (job.run_at, job.id))


async def renew_leases(
    session: AsyncSession,
    *,
    worker_id: str,
    job_ids: Collection[str],
    lease_s: float,
    now: datetime | None = None,
) -> set[str]:
    """Extend the leases `worker_id` still holds among `job_ids`; returns the ids renewed."""
    if not job_ids:
        return set()
    now = now or utc_now()
    statement = (
        update(Job)
        .where(
            Job.id.in_(list(job_ids)),
            Job.locked_by == worker_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(locked_until=now + timedelta(seconds=lease_s))
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.execute(statement)).scalars())


async def requeue_expired(session: AsyncSession, *, now: datetime | None = None) -> list[str]:
    """Put back in the queue every running job whose lease ran out (its worker died)."""
    now = now or utc_now()
    statement = (
        update(Job)
        .where(Job.status == JobStatus.RUNNING.value, Job.locked_until < now)
        .values(
            status=JobStatus.QUEUED.value,
            locked_by=None,
            locked_until=None,
            run_at=now,
            last_error="The lease expired before the worker finished (worker lost)",
            updated_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return list((await session.execute(statement)).scalars())


def _held_by(job: ClaimedJob, worker_id: str) -> tuple[Any, ...]:
    return (
        Job.id == job.id,
        Job.locked_by == worker_id,
        Job.status == JobStatus.RUNNING.value,
    )


async def mark_succeeded(
    session: AsyncSession, job: ClaimedJob, *, worker_id: str, now: datetime | None = None
) -> bool:
    """Record success if `worker_id` still holds the job; False means the lease was lost."""
    now = now or utc_now()
    statement = (
        update(Job)
        .where(*_held_by(job, worker_id))
        .values(
            status=JobStatus.SUCCEEDED.value,
            locked_by=None,
            locked_until=None,
            last_error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(await session.execute(statement)) == 1


async def schedule_retry(
    session: AsyncSession,
    job: ClaimedJob,
    *,
    worker_id: str,
    error: str,
    delay_s: float,
    now: datetime | None = None,
) -> bool:
    """Queue the job again `delay_s` from now with its error; False means the lease was lost."""
    now = now or utc_now()
    statement = (
        update(Job)
        .where(*_held_by(job, worker_id))
        .values(
            status=JobStatus.QUEUED.value,
            run_at=now + timedelta(seconds=delay_s),
            locked_by=None,
            locked_until=None,
            last_error=error[:MAX_ERROR_CHARS],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(await session.execute(statement)) == 1


async def mark_failed(
    session: AsyncSession,
    job: ClaimedJob,
    *,
    worker_id: str,
    error: str,
    now: datetime | None = None,
) -> bool:
    """End the job as failed with its error; False means the lease was lost."""
    now = now or utc_now()
    statement = (
        update(Job)
        .where(*_held_by(job, worker_id))
        .values(
            status=JobStatus.FAILED.value,
            locked_by=None,
            locked_until=None,
            last_error=error[:MAX_ERROR_CHARS],
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return _rowcount(await session.execute(statement)) == 1


async def release_jobs(
    session: AsyncSession,
    *,
    worker_id: str,
    job_ids: Sequence[str],
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Hand unfinished jobs back to the queue at once, their interrupted attempt not counted."""
    if not job_ids:
        return []
    now = now or utc_now()
    statement = (
        update(Job)
        .where(
            Job.id.in_(list(job_ids)),
            Job.locked_by == worker_id,
            Job.status == JobStatus.RUNNING.value,
        )
        .values(
            status=JobStatus.QUEUED.value,
            # The shutdown interrupted the attempt; it says nothing about the job itself.
            attempts=Job.attempts - 1,
            run_at=now,
            locked_by=None,
            locked_until=None,
            updated_at=now,
        )
        .returning(*_CLAIMED_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    return [_claimed(row) for row in (await session.execute(statement)).all()]

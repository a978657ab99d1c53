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

from sqlalchemy import Row, Table, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from upload_service.context import correlation_id_var
from upload_service.db.models import Base, Job, new_task_id

DEFAULT_MAX_ATTEMPTS = 5
MAX_ERROR_CHARS = 1000

Database = AsyncConnection | AsyncSession
"""Where queue statements run: a worker's Core connection, or a caller's ORM session."""


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


# Statements are built once, on the table rather than the ORM class: the worker runs them
# hundreds of times a second, and building plus cache-keying a statement costs more than
# running it (measured).
JOBS: Table = Base.metadata.tables["jobs"]
_c = JOBS.c
_CLAIMED_COLUMNS = (
    _c.id,
    _c.kind,
    _c.doc_id,
    _c.owner,
    _c.payload,
    _c.attempts,
    _c.max_attempts,
    _c.correlation_id,
    _c.run_at,
)
_HELD = (
    _c.id.in_(bindparam("ids", expanding=True)),
    _c.locked_by == bindparam("worker_id"),
    _c.status == JobStatus.RUNNING.value,
)
_HELD_ONE = (
    _c.id == bindparam("job_id"),
    _c.locked_by == bindparam("worker_id"),
    _c.status == JobStatus.RUNNING.value,
)
_due = (
    select(_c.id)
    .where(_c.status == JobStatus.QUEUED.value, _c.run_at <= bindparam("now"))
    .order_by(_c.run_at)
    .limit(bindparam("limit"))
    # Rows another worker is claiming right now are skipped, not waited for.
    .with_for_update(skip_locked=True)
    .cte("due")
)
_CLAIM = (
    update(JOBS)
    .where(_c.id.in_(select(_due.c.id)))
    .values(
        status=JobStatus.RUNNING.value,
        attempts=_c.attempts + 1,
        locked_until=bindparam("locked_until"),
        locked_by=bindparam("worker_id"),
        updated_at=bindparam("now"),
    )
    .returning(*_CLAIMED_COLUMNS)
)
_RENEW = update(JOBS).where(*_HELD).values(locked_until=bindparam("locked_until")).returning(_c.id)
_REQUEUE_EXPIRED = (
    update(JOBS)
    .where(_c.status == JobStatus.RUNNING.value, _c.locked_until < bindparam("now"))
    .values(
        status=JobStatus.QUEUED.value,
        locked_by=None,
        locked_until=None,
        run_at=bindparam("now"),
        last_error="The lease expired before the worker finished (worker lost)",
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_SUCCEED = (
    update(JOBS)
    .where(*_HELD)
    .values(
        status=JobStatus.SUCCEEDED.value,
        locked_by=None,
        locked_until=None,
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_RETRY = (
    update(JOBS)
    .where(*_HELD_ONE)
    .values(
        status=JobStatus.QUEUED.value,
        run_at=bindparam("run_at"),
        locked_by=None,
        locked_until=None,
        last_error=bindparam("error"),
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_FAIL = (
    update(JOBS)
    .where(*_HELD_ONE)
    .values(
        status=JobStatus.FAILED.value,
        locked_by=None,
        locked_until=None,
        last_error=bindparam("error"),
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_RELEASE = (
    update(JOBS)
    .where(*_HELD)
    .values(
        status=JobStatus.QUEUED.value,
        # The shutdown interrupted the attempt; it says nothing about the job itself.
        attempts=_c.attempts - 1,
        run_at=bindparam("now"),
        locked_by=None,
        locked_until=None,
        updated_at=bindparam("now"),
    )
    .returning(*_CLAIMED_COLUMNS)
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


def _new_job(
    *,
    kind: str,
    doc_id: str | None,
    owner: str | None,
    payload: dict[str, Any] | None,
    correlation_id: str | None,
    max_attempts: int,
    run_at: datetime | None,
) -> dict[str, Any]:
    now = utc_now()
    return {
        "id": new_task_id(),
        "kind": str(kind),
        "doc_id": doc_id,
        "owner": owner,
        "payload": dict(payload or {}),
        "status": JobStatus.QUEUED.value,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or now,
        "locked_until": None,
        "locked_by": None,
        "last_error": None,
        "correlation_id": correlation_id
        if correlation_id is not None
        else correlation_id_var.get(),
        "created_at": now,
        "updated_at": now,
    }


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
    job = Job(
        **_new_job(
            kind=kind,
            doc_id=doc_id,
            owner=owner,
            payload=payload,
            correlation_id=correlation_id,
            max_attempts=max_attempts,
            run_at=run_at,
        )
    )
    session.add(job)
    return job


async def insert_job(
    db: Database,
    *,
    kind: str,
    doc_id: str | None = None,
    owner: str | None = None,
    payload: dict[str, Any] | None = None,
    correlation_id: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    run_at: datetime | None = None,
) -> str:
    """Like `enqueue`, as one Core INSERT in the caller's transaction; returns the job id."""
    values = _new_job(
        kind=kind,
        doc_id=doc_id,
        owner=owner,
        payload=payload,
        correlation_id=correlation_id,
        max_attempts=max_attempts,
        run_at=run_at,
    )
    await db.execute(insert(JOBS), values)
    return str(values["id"])


async def claim_jobs(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs for `worker_id`, oldest first, each under a fresh lease."""
    now = now or utc_now()
    params = {
        "now": now,
        "limit": limit,
        "worker_id": worker_id,
        "locked_until": now + timedelta(seconds=lease_s),
    }
    rows = (await db.execute(_CLAIM, params)).all()
    return sorted((_claimed(row) for row in rows), key=lambda job: (job.run_at, job.id))


async def renew_leases(
    db: Database,
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
    params = {
        "ids": list(job_ids),
        "worker_id": worker_id,
        "locked_until": now + timedelta(seconds=lease_s),
    }
    return set((await db.execute(_RENEW, params)).scalars())


async def requeue_expired(db: Database, *, now: datetime | None = None) -> list[str]:
    """Put back in the queue every running job whose lease ran out (its worker died)."""
    return list((await db.execute(_REQUEUE_EXPIRED, {"now": now or utc_now()})).scalars())


async def mark_succeeded(
    db: Database,
    job_ids: Collection[str],
    *,
    worker_id: str,
    now: datetime | None = None,
) -> set[str]:
    """Record the success of the jobs `worker_id` still holds; returns their ids.

    A job missing from the answer had its lease taken over: its effects must not be applied.
    """
    if not job_ids:
        return set()
    params = {"ids": list(job_ids), "worker_id": worker_id, "now": now or utc_now()}
    return set((await db.execute(_SUCCEED, params)).scalars())


async def schedule_retry(
    db: Database,
    job: ClaimedJob,
    *,
    worker_id: str,
    error: str,
    delay_s: float,
    now: datetime | None = None,
) -> bool:
    """Queue the job again `delay_s` from now with its error; False means the lease was lost."""
    now = now or utc_now()
    params = {
        "job_id": job.id,
        "worker_id": worker_id,
        "now": now,
        "run_at": now + timedelta(seconds=delay_s),
        "error": error[:MAX_ERROR_CHARS],
    }
    return (await db.execute(_RETRY, params)).first() is not None


async def mark_failed(
    db: Database,
    job: ClaimedJob,
    *,
    worker_id: str,
    error: str,
    now: datetime | None = None,
) -> bool:
    """End the job as failed with its error; False means the lease was lost."""
    params = {
        "job_id": job.id,
        "worker_id": worker_id,
        "now": now or utc_now(),
        "error": error[:MAX_ERROR_CHARS],
    }
    return (await db.execute(_FAIL, params)).first() is not None


async def release_jobs(
    db: Database,
    *,
    worker_id: str,
    job_ids: Sequence[str],
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Hand unfinished jobs back to the queue at once, their interrupted attempt not counted."""
    if not job_ids:
        return []
    params = {"ids": list(job_ids), "worker_id": worker_id, "now": now or utc_now()}
    return [_claimed(row) for row in (await db.execute(_RELEASE, params)).all()]

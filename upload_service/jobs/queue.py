"""The durable job queue: what a job is, and how it enters the `jobs` table.

A job is enqueued in its caller's transaction, so it exists exactly when the caller's work
committed (a document row and its classify job, together). Workers claim jobs under a lease
(`leases.py`) and retry failed attempts after a backoff with jitter (`Backoff`); a job whose
dependency is unavailable waits for it with the same backoff, its attempts not counted.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Table, exists, insert, literal, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from upload_service.db.models import Base, Job, new_task_id
from upload_service.events.outbox import wake_workers
from upload_service.observability.context import correlation_id_var

DEFAULT_MAX_ATTEMPTS = 5

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
        return _equal_jitter(self.ceiling_s(attempts), rng)

    def wait_s(
        self, waited_s: float, rng: random.Random | None = None, *, asked_s: float | None = None
    ) -> float:
        """The delay before a job that has waited `waited_s` for a dependency tries it again.

        About as long again as it has waited (so the gaps grow geometrically, as they do with
        attempts), between `base_s` and `cap_s`, with equal jitter. A wait the dependency asked
        for (`Retry-After`) is honoured as it is, within the cap.
        """
        if asked_s is not None and asked_s > 0:
            return min(self.cap_s, asked_s)
        return _equal_jitter(min(self.cap_s, max(self.base_s, waited_s)), rng)


def _equal_jitter(ceiling: float, rng: random.Random | None) -> float:
    draw = (rng or random).random()
    return ceiling / 2 + draw * ceiling / 2


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


# Statements are built once, on the table rather than the ORM class: the worker runs them
# hundreds of times a second, and building plus cache-keying a statement costs more than
# running it (measured).
JOBS: Table = Base.metadata.tables["jobs"]


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

    Its commit wakes the workers (`NOTIFY`, or in memory on SQLite).

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
    await wake_workers(await session.connection())
    return job


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job for `insert_jobs` to queue (the arguments of `insert_job`)."""

    kind: str
    doc_id: str | None = None
    owner: str | None = None
    payload: dict[str, Any] | None = None
    correlation_id: str | None = None
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    run_at: datetime | None = None


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
    job = NewJob(kind, doc_id, owner, payload, correlation_id, max_attempts, run_at)
    return (await insert_jobs(db, [job]))[0]


async def insert_jobs(db: Database, jobs: Sequence[NewJob]) -> list[str]:
    """Queue `jobs` with one INSERT (and one wake-up) in the caller's transaction; their ids."""
    if not jobs:
        return []
    rows = [
        _new_job(
            kind=job.kind,
            doc_id=job.doc_id,
            owner=job.owner,
            payload=job.payload,
            correlation_id=job.correlation_id,
            max_attempts=job.max_attempts,
            run_at=job.run_at,
        )
        for job in jobs
    ]
    await db.execute(insert(JOBS), rows)
    await wake_workers(db if isinstance(db, AsyncConnection) else await db.connection())
    return [str(row["id"]) for row in rows]


async def insert_singleton_job(
    conn: AsyncConnection,
    *,
    job_id: str,
    kind: str,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
) -> bool:
    """Queue a job under `job_id` unless that id exists or a `kind` job is active; True if queued.

    Several workers may call it at once: the fixed id is the primary key, so when two inserts
    race past the `NOT EXISTS`, one of them does nothing (`ON CONFLICT DO NOTHING`, which both
    PostgreSQL and SQLite have) instead of failing its transaction.
    """
    values = _new_job(
        kind=kind,
        doc_id=None,
        owner=None,
        payload=None,
        correlation_id=None,
        max_attempts=max_attempts,
        run_at=None,
    )
    values["id"] = job_id
    active = select(JOBS.c.id).where(
        JOBS.c.kind == str(kind), JOBS.c.status.in_([status.value for status in ACTIVE_STATUSES])
    )
    row = select(*(literal(value, JOBS.c[name].type) for name, value in values.items())).where(
        ~exists(active)
    )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(JOBS)
        .from_select(list(values), row)
        .on_conflict_do_nothing(index_elements=[JOBS.c.id])
        .returning(JOBS.c.id)
    )
    queued = (await conn.execute(statement)).first() is not None
    if queued:
        await wake_workers(conn)
    return queued

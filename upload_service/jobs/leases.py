"""Leases on claimed jobs: claim, renew, record the outcome, requeue the lost, release.

A claim is one statement: `SELECT … FOR UPDATE SKIP LOCKED` picks due jobs no other worker holds
and the surrounding `UPDATE … RETURNING` marks them `running` under a lease (`locked_until`), so
two workers never hold the same job. A live worker renews its leases; a dead worker's jobs are
put back in the queue once their lease has run out. SQLite has no row locks (the compiler drops
`FOR UPDATE`), but it has one writer at a time, so the same `UPDATE … RETURNING` is atomic there.

Every state change after the claim is conditional on `locked_by` still naming the worker and the
job still `running`: a worker that lost its lease can never overwrite the new owner's outcome.
A failed attempt is retried (`schedule_retry`, it counts) or, when a dependency was unavailable,
deferred (`defer_job`: the attempt is given back and `unavailable_since` remembers when the wait
began, for the retry window). A job that waited longer than that window while the classifier's
breaker kept it out of the claim is ended where it lies in the queue (`expired_waits`,
`give_up_waiting`).
Times are the workers' clocks (UTC), compared with a lease measured in tens of seconds.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Row,
    Select,
    Update,
    and_,
    bindparam,
    func,
    or_,
    select,
    update,
)

from upload_service.jobs.queue import JOBS, Database, JobStatus, utc_now

MAX_ERROR_CHARS = 1000


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
    unavailable_since: datetime | None = None
    """When the job began waiting for an unavailable dependency; None unless it is waiting."""

    @property
    def is_last_attempt(self) -> bool:
        """Whether a failure of this attempt ends the job."""
        return self.attempts >= self.max_attempts


# Built once, on the table: see `queue.py` for why.
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
    _c.unavailable_since,
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


def _claim(*conditions: ColumnElement[bool]) -> Update:
    due = (
        select(_c.id)
        .where(_c.status == JobStatus.QUEUED.value, _c.run_at <= bindparam("now"), *conditions)
        .order_by(_c.run_at)
        .limit(bindparam("limit"))
        # Rows another worker is claiming right now are skipped, not waited for.
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    return (
        update(JOBS)
        .where(_c.id.in_(select(due.c.id)))
        .values(
            status=JobStatus.RUNNING.value,
            attempts=_c.attempts + 1,
            locked_until=bindparam("locked_until"),
            locked_by=bindparam("worker_id"),
            updated_at=bindparam("now"),
        )
        .returning(*_CLAIMED_COLUMNS)
    )


_CLAIM = _claim()
# While the classifier's circuit is open, its jobs stay in the queue, untouched.
_CLAIM_EXCEPT_KIND = _claim(_c.kind != bindparam("skip_kind"))
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
        # The dependency answered: a later outage is a new wait, with a window of its own.
        unavailable_since=None,
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_DEFER = (
    update(JOBS)
    .where(*_HELD_ONE)
    .values(
        status=JobStatus.QUEUED.value,
        # A dependency's absence says nothing about the job: the attempt is given back.
        attempts=_c.attempts - 1,
        run_at=bindparam("run_at"),
        locked_by=None,
        locked_until=None,
        last_error=bindparam("error"),
        unavailable_since=func.coalesce(_c.unavailable_since, bindparam("now")),
        updated_at=bindparam("now"),
    )
    .returning(_c.id)
)
_WAKE_WAITING = (
    update(JOBS)
    .where(
        _c.status == JobStatus.QUEUED.value,
        _c.kind == bindparam("waiting_kind"),
        _c.unavailable_since.is_not(None),
        _c.run_at > bindparam("now"),
    )
    .values(run_at=bindparam("now"), updated_at=bindparam("now"))
    .returning(_c.id)
)
# A job the open breaker held back before it was ever tried has waited since it became due, but
# only counts once the breaker itself has been open for the whole window: a backlog that is
# merely old (a slow classifier, then a blip) is not an outage of that length.
_waiting_since = func.coalesce(_c.unavailable_since, _c.run_at)
_EXPIRED_WAITS: Select[Any] = (
    select(*_CLAIMED_COLUMNS)
    .where(
        _c.status == JobStatus.QUEUED.value,
        _c.kind == bindparam("waiting_kind"),
        or_(
            _c.unavailable_since <= bindparam("cutoff"),
            and_(
                _c.unavailable_since.is_(None),
                bindparam("include_untried", type_=Boolean),
                _c.run_at <= bindparam("cutoff"),
            ),
        ),
    )
    .order_by(_waiting_since)
    .limit(bindparam("limit"))
    # Rows another worker is claiming or ending right now are skipped, not waited for.
    .with_for_update(skip_locked=True)
)
_GIVE_UP = (
    update(JOBS)
    .where(_c.id == bindparam("job_id"), _c.status == JobStatus.QUEUED.value)
    .values(
        status=JobStatus.FAILED.value, last_error=bindparam("error"), updated_at=bindparam("now")
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


def claimed_job(row: Row[Any]) -> ClaimedJob:
    """A claimed job from a row holding the claim's columns."""
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
        unavailable_since=row.unavailable_since,
    )


async def claim_jobs(
    db: Database,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    skip_kind: str | None = None,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Claim up to `limit` due jobs for `worker_id`, oldest first, each under a fresh lease.

    With `skip_kind`, jobs of that kind are left in the queue.
    """
    params = claim_params(
        worker_id=worker_id, limit=limit, lease_s=lease_s, skip_kind=skip_kind, now=now
    )
    rows = (await db.execute(claim_statement(skip_kind), params)).all()
    return by_due_time([claimed_job(row) for row in rows])


def claim_statement(skip_kind: str | None) -> Update:
    """The claim's `UPDATE … RETURNING` (for `claim_params`), to run alone or inside another."""
    return _CLAIM if skip_kind is None else _CLAIM_EXCEPT_KIND


def claim_params(
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    skip_kind: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The parameters of `claim_statement`."""
    now = now or utc_now()
    params: dict[str, Any] = {
        "now": now,
        "limit": limit,
        "worker_id": worker_id,
        "locked_until": now + timedelta(seconds=lease_s),
    }
    if skip_kind is not None:
        params["skip_kind"] = skip_kind
    return params


def by_due_time(jobs: list[ClaimedJob]) -> list[ClaimedJob]:
    """Claimed jobs in the order they became due (`RETURNING` keeps no order)."""
    return sorted(jobs, key=lambda job: (job.run_at, job.id))


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


async def defer_job(
    db: Database,
    job: ClaimedJob,
    *,
    worker_id: str,
    error: str,
    delay_s: float,
    now: datetime | None = None,
) -> bool:
    """Queue the job again `delay_s` from now, its attempt not counted, while a dependency it
    needs is unavailable; False means the lease was lost."""
    now = now or utc_now()
    params = {
        "job_id": job.id,
        "worker_id": worker_id,
        "now": now,
        "run_at": now + timedelta(seconds=delay_s),
        "error": error[:MAX_ERROR_CHARS],
    }
    return (await db.execute(_DEFER, params)).first() is not None


async def wake_waiting(db: Database, kind: str, *, now: datetime | None = None) -> list[str]:
    """Make every `kind` job waiting for its dependency due now (the dependency is back)."""
    params = {"waiting_kind": kind, "now": now or utc_now()}
    return list((await db.execute(_WAKE_WAITING, params)).scalars())


async def expired_waits(
    db: Database,
    kind: str,
    *,
    window_s: float,
    limit: int,
    include_untried: bool,
    now: datetime | None = None,
) -> list[ClaimedJob]:
    """Queued `kind` jobs that have waited for their dependency longer than `window_s`, locked
    until the end of the transaction (SQLite: `give_up_waiting` re-checks they are queued).

    `include_untried`: also jobs never tried (the breaker held them back from the start), due
    for longer than the window; only when the outage has lasted that long.
    """
    params = {
        "waiting_kind": kind,
        "cutoff": (now or utc_now()) - timedelta(seconds=window_s),
        "limit": limit,
        "include_untried": include_untried,
    }
    return [claimed_job(row) for row in (await db.execute(_EXPIRED_WAITS, params)).all()]


async def give_up_waiting(
    db: Database, job: ClaimedJob, *, error: str, now: datetime | None = None
) -> bool:
    """End a queued job as failed with its error; False if it is no longer queued."""
    params = {"job_id": job.id, "now": now or utc_now(), "error": error[:MAX_ERROR_CHARS]}
    return (await db.execute(_GIVE_UP, params)).first() is not None


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
    return [claimed_job(row) for row in (await db.execute(_RELEASE, params)).all()]

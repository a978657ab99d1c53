"""A classify job's document goes `processing` with its claim, and `queued` again if handed back.

The worker claims a batch of jobs and marks their documents `processing` in one transaction, on
PostgreSQL in one statement (`claim_and_prepare`), with the documents' events; a job handed back
unfinished (a worker stopping, a dependency away) puts its document back to `queued`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, Table, Update, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from upload_service.db.models import Base
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.jobs.handler_context import Subject
from upload_service.jobs.leases import (
    ClaimedJob,
    by_due_time,
    claim_jobs,
    claim_params,
    claim_statement,
    claimed_job,
)
from upload_service.jobs.queue import JobKind, utc_now

# Built once, on the table: see `queue.py` for why.
DOCUMENTS: Table = Base.metadata.tables["documents"]
_d = DOCUMENTS.c
_START = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)))
    .values(status="processing", updated_at=bindparam("now"))
    .returning(*DOCUMENTS.c)
)
_REQUEUE = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)), _d.status == "processing")
    .values(status="queued", updated_at=bindparam("now"))
    .returning(*DOCUMENTS.c)
)


async def start_classifications(
    conn: AsyncConnection, jobs: list[ClaimedJob]
) -> dict[str, Subject | None]:
    """Mark the documents of claimed classify jobs `processing`; their rows by job id."""
    doc_ids = _classified(jobs)
    if not doc_ids:
        return {}
    rows = (await conn.execute(_START, {"ids": sorted(doc_ids), "now": utc_now()})).mappings().all()
    return await _started(conn, jobs, rows)


def _classified(jobs: list[ClaimedJob]) -> set[str]:
    return {job.doc_id for job in jobs if job.kind == JobKind.CLASSIFY and job.doc_id}


async def _started(
    conn: AsyncConnection, jobs: list[ClaimedJob], rows: Sequence[Mapping[Any, Any]]
) -> dict[str, Subject | None]:
    # The documents just marked `processing`: their events, and the handlers' subjects.
    await record_events(conn, [DocumentChange.updated(row) for row in rows])
    found = {
        row["id"]: Subject(
            doc_id=row["id"],
            owner=row["owner"],
            filename=row["filename"],
            content_type=row["content_type"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            storage_key=row["storage_key"],
        )
        for row in rows
    }
    doc_ids = _classified(jobs)
    return {job.id: found.get(job.doc_id) for job in jobs if job.doc_id in doc_ids}


async def prepare_claimed(
    conn: AsyncConnection, jobs: list[ClaimedJob]
) -> dict[str, Subject | None]:
    """Work done in the claim's own transaction, a batch at a time (saves one per job).

    Returns the classify jobs' documents by job id, for `HandlerContext.subjects`.
    """
    return await start_classifications(conn, jobs)


def _claim_and_start(claim: Update) -> Select[Any]:
    claimed = claim.cte("claimed")
    started = (
        update(DOCUMENTS)
        .where(_d.id == claimed.c.doc_id, claimed.c.kind == JobKind.CLASSIFY.value)
        .values(status="processing", updated_at=bindparam("now"))
        .returning(*DOCUMENTS.c)
        .cte("started")
    )
    documents = (column.label(f"document_{column.key}") for column in started.c)
    return select(*claimed.c, *documents).select_from(
        claimed.outerjoin(started, started.c.id == claimed.c.doc_id)
    )


# PostgreSQL: the claim and its documents going `processing` in one statement (by whether a
# kind is skipped). Both sit in one snapshot, so a document is started exactly by its claim.
_CLAIM_AND_START = {
    skipping: _claim_and_start(claim_statement(JobKind.CLASSIFY if skipping else None))
    for skipping in (False, True)
}


async def claim_and_prepare(
    conn: AsyncConnection,
    *,
    worker_id: str,
    limit: int,
    lease_s: float,
    skip_kind: str | None = None,
) -> tuple[list[ClaimedJob], dict[str, Subject | None]]:
    """`claim_jobs`, then `prepare_claimed`, in `conn`'s transaction: one statement on PostgreSQL.

    Returns the jobs and the classify jobs' documents by job id.
    """
    if conn.dialect.name != "postgresql":
        jobs = await claim_jobs(
            conn, worker_id=worker_id, limit=limit, lease_s=lease_s, skip_kind=skip_kind
        )
        return jobs, await prepare_claimed(conn, jobs)
    params = claim_params(worker_id=worker_id, limit=limit, lease_s=lease_s, skip_kind=skip_kind)
    rows = (await conn.execute(_CLAIM_AND_START[skip_kind is not None], params)).all()
    documents: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row.document_id is not None:  # Two jobs of one document share its row.
            documents[row.document_id] = {
                column.key: row._mapping[f"document_{column.key}"] for column in DOCUMENTS.c
            }
    jobs = by_due_time([claimed_job(row) for row in rows])
    return jobs, await _started(conn, jobs, [documents[key] for key in sorted(documents)])


async def documents_requeued(conn: AsyncConnection, jobs: list[ClaimedJob]) -> None:
    """Documents of classify jobs handed back unfinished are `queued` again, not `processing`."""
    doc_ids = sorted({job.doc_id for job in jobs if job.kind == JobKind.CLASSIFY and job.doc_id})
    if doc_ids:
        rows = (await conn.execute(_REQUEUE, {"ids": doc_ids, "now": utc_now()})).mappings()
        await record_events(conn, [DocumentChange.updated(row) for row in rows])

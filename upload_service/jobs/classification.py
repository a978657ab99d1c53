"""The `classify` job: the document goes `processing`, its bytes to the classifier, `complete`.

Documents are marked `processing` in the claim's own transaction, a batch at a time, and
`complete` in the transaction that records the jobs' success, a batch at a time too
(`complete_classifications`); a job that runs out of attempts leaves its document `failed` with
the error (`classify_failed`). Either outcome queues a webhook notification in the same
transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    Select,
    String,
    Table,
    Text,
    Update,
    bindparam,
    cast,
    func,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from upload_service.classifier.base import DocumentToClassify
from upload_service.config import Settings
from upload_service.db.models import Base
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.jobs.handler_context import (
    Batched,
    Effects,
    HandlerContext,
    PermanentJobError,
    Subject,
)
from upload_service.jobs.leases import (
    ClaimedJob,
    by_due_time,
    claim_jobs,
    claim_params,
    claim_statement,
    claimed_job,
)
from upload_service.jobs.notifications import (
    Notification,
    document_event,
    enqueue_notification,
    enqueue_notifications,
)
from upload_service.jobs.queue import JobKind, utc_now

logger = logging.getLogger(__name__)


# Built once, on the table: see `queue.py` for why.
DOCUMENTS: Table = Base.metadata.tables["documents"]
_d = DOCUMENTS.c
_START = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)))
    .values(status="processing", updated_at=bindparam("now"))
    .returning(*DOCUMENTS.c)
)
_COMPLETE = (
    update(DOCUMENTS)
    .where(_d.id == bindparam("doc_id"))
    .values(
        status="complete",
        classification=bindparam("classification"),
        error=None,
        updated_at=bindparam("now"),
    )
    .returning(*DOCUMENTS.c)
)
# PostgreSQL: a batch of documents complete in one statement, each with its own classification.
_batch = (
    func.unnest(
        bindparam("doc_ids", type_=ARRAY(String)),
        bindparam("classifications", type_=ARRAY(Text)),
    )
    .table_valued("doc_id", "classification")
    .render_derived(name="batch")
)
_COMPLETE_ALL = (
    update(DOCUMENTS)
    .where(_d.id == _batch.c.doc_id)
    .values(
        status="complete",
        classification=cast(_batch.c.classification, JSON),
        error=None,
        updated_at=bindparam("now"),
    )
    .returning(*DOCUMENTS.c)
)
_REQUEUE = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)), _d.status == "processing")
    .values(status="queued", updated_at=bindparam("now"))
    .returning(*DOCUMENTS.c)
)
_FAIL = (
    update(DOCUMENTS)
    .where(_d.id == bindparam("doc_id"))
    .values(
        status="failed", classification=None, error=bindparam("error"), updated_at=bindparam("now")
    )
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


async def classify(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Classify the job's document: processing, stream its bytes to the classifier, complete."""
    if job.id in ctx.subjects:
        subject = ctx.subjects.pop(job.id)
    else:
        async with ctx.engine.begin() as conn:
            subject = (await start_classifications(conn, [job])).get(job.id)
    if subject is None:
        logger.info("classify %s: document %s is gone; nothing to do", job.id, job.doc_id)
        return None
    document = DocumentToClassify(
        doc_id=subject.doc_id,
        filename=subject.filename,
        content_type=subject.content_type,
        size_bytes=subject.size_bytes,
        sha256=subject.sha256,
    )
    try:
        result = await ctx.classifier.classify(document, ctx.storage.read(subject.storage_key))
    except FileNotFoundError:
        raise PermanentJobError("The document's bytes are missing from storage") from None
    classification = {
        "label": result.label,
        "confidence": result.confidence,
        "model_version": result.model_version,
    }
    logger.info("classified %s as %s (%.2f)", subject.doc_id, result.label, result.confidence)
    completion = Completion(subject.doc_id, classification, job.correlation_id, ctx.settings)
    return Batched(complete_classifications, completion)


@dataclass(frozen=True, slots=True)
class Completion:
    """A classified document, to be marked `complete` when its job's success is recorded."""

    doc_id: str
    classification: dict[str, Any]
    correlation_id: str | None
    settings: Settings


async def complete_classifications(conn: AsyncConnection, done: Sequence[Completion]) -> None:
    """Mark the documents `complete` with their classifications, tell their owners and webhook.

    One UPDATE for the batch on PostgreSQL. A document deleted while it was being classified is
    skipped: nobody to tell.
    """
    if not done:
        return
    now = utc_now()
    if conn.dialect.name == "postgresql":
        params = {
            "doc_ids": [item.doc_id for item in done],
            "classifications": [json.dumps(item.classification) for item in done],
            "now": now,
        }
        found = {row["id"]: row for row in (await conn.execute(_COMPLETE_ALL, params)).mappings()}
    else:
        found = {}
        for item in done:  # SQLite is in process: a statement costs no round trip.
            params = {"doc_id": item.doc_id, "classification": item.classification, "now": now}
            row = (await conn.execute(_COMPLETE, params)).mappings().first()
            if row is not None:
                found[item.doc_id] = row
    completed = [(item, found[item.doc_id]) for item in done if item.doc_id in found]
    await record_events(conn, [DocumentChange.updated(row) for _, row in completed])
    notifications = [
        Notification(
            body=document_event(
                event="document.completed",
                doc_id=item.doc_id,
                owner=row["owner"],
                status="complete",
                classification=item.classification,
                occurred_at=now,
            ),
            correlation_id=item.correlation_id,
        )
        for item, row in completed
    ]
    await enqueue_notifications(conn, done[0].settings, notifications)


def classify_failed(ctx: HandlerContext, job: ClaimedJob, message: str) -> Effects:
    """The document of a classify job that ran out of attempts: `failed`, with its error."""
    error = {
        "code": "CLASSIFICATION_FAILED",
        "message": f"Classification failed after {job.attempts} attempt(s): {message}",
    }

    async def fail_document(conn: AsyncConnection) -> None:
        now = utc_now()
        params = {"doc_id": job.doc_id, "error": error, "now": now}
        row = (await conn.execute(_FAIL, params)).mappings().one_or_none()
        if row is None or job.doc_id is None:
            return
        await record_events(conn, [DocumentChange.updated(row)])
        body = document_event(
            event="document.failed",
            doc_id=job.doc_id,
            owner=row["owner"],
            status="failed",
            error=error,
            occurred_at=now,
        )
        await enqueue_notification(conn, ctx.settings, body, correlation_id=job.correlation_id)

    return fail_document

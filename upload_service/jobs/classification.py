"""The `classify` job: the document goes `processing`, its bytes to the classifier, `complete`.

Documents are marked `processing` in the claim's own transaction, a batch at a time
(`processing.py`), and `complete` in the transaction that records the jobs' success, a batch at
a time too (`complete_classifications`); a job that runs out of attempts leaves its document
`failed` with the error (`classify_failed`). Either outcome queues a webhook notification in the
same transaction.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, String, Table, Text, bindparam, cast, func, update
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
)
from upload_service.jobs.leases import ClaimedJob
from upload_service.jobs.notifications import (
    Notification,
    document_event,
    enqueue_notification,
    enqueue_notifications,
)
from upload_service.jobs.processing import start_classifications
from upload_service.jobs.queue import utc_now

logger = logging.getLogger(__name__)


# Built once, on the table: see `queue.py` for why.
DOCUMENTS: Table = Base.metadata.tables["documents"]
_d = DOCUMENTS.c
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
_FAIL = (
    update(DOCUMENTS)
    .where(_d.id == bindparam("doc_id"))
    .values(
        status="failed", classification=None, error=bindparam("error"), updated_at=bindparam("now")
    )
    .returning(*DOCUMENTS.c)
)


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

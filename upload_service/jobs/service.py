"""Task operations behind the API: (re)queue a document's classification, read a task, reset.

Each function locks the document row (`SELECT … FOR UPDATE`) before it looks for an active task,
so two concurrent requests for the same document queue one task, not two.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from upload_service.db.models import Document, Job
from upload_service.errors import DocumentNotFound, TaskNotFound
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.jobs.queue import (
    ACTIVE_STATUSES,
    DEFAULT_MAX_ATTEMPTS,
    JobKind,
    JobStatus,
    enqueue,
    utc_now,
)
from upload_service.jobs.schemas import TaskOut


async def _locked_document(session: AsyncSession, doc_id: str, owner: str | None) -> Document:
    query = select(Document).where(Document.id == doc_id).with_for_update()
    if owner is not None:
        query = query.where(Document.owner == owner)
    document = (await session.execute(query)).scalar_one_or_none()
    if document is None:
        # Another user's document is as absent as one that never existed.
        raise DocumentNotFound(doc_id)
    return document


async def _latest_classification(
    session: AsyncSession, doc_id: str, statuses: tuple[str, ...]
) -> Job | None:
    query = (
        select(Job)
        .where(Job.doc_id == doc_id, Job.kind == JobKind.CLASSIFY.value, Job.status.in_(statuses))
        .order_by(Job.created_at.desc(), Job.id.desc())
        .limit(1)
    )
    return (await session.execute(query)).scalar_one_or_none()


async def _queue_classification(
    session: AsyncSession, document: Document, *, reuse: tuple[str, ...], max_attempts: int
) -> Job:
    active = await _latest_classification(session, document.id, reuse)
    if active is not None:
        return active
    document.status = "queued"
    return await enqueue(
        session,
        kind=JobKind.CLASSIFY,
        doc_id=document.id,
        owner=document.owner,
        max_attempts=max_attempts,
    )


async def _announce(session: AsyncSession, document: Document) -> None:
    # The document's new state goes to its owner's streams with the transaction's commit.
    await session.flush()
    await record_events(await session.connection(), [DocumentChange.of(document)])


async def request_processing(
    session: AsyncSession, doc_id: str, owner: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> TaskOut:
    """The owner's document's queued or running classification task, or a new one."""
    document = await _locked_document(session, doc_id, owner)
    was = document.status
    job = await _queue_classification(
        session, document, reuse=tuple(ACTIVE_STATUSES), max_attempts=max_attempts
    )
    if document.status != was:
        await _announce(session, document)
    return TaskOut.of(job)


async def reprocess(
    session: AsyncSession, doc_id: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> TaskOut:
    """Like `request_processing`, for any owner's document (internal callers only)."""
    document = await _locked_document(session, doc_id, None)
    was = document.status
    job = await _queue_classification(
        session, document, reuse=tuple(ACTIVE_STATUSES), max_attempts=max_attempts
    )
    if document.status != was:
        await _announce(session, document)
    return TaskOut.of(job)


async def reset(
    session: AsyncSession, doc_id: str, *, max_attempts: int = DEFAULT_MAX_ATTEMPTS
) -> Document:
    """Put any owner's document back to `queued`, results cleared, with a classification task.

    A task still waiting in the queue is reused; a running one started before the reset, so a
    new task is queued behind it.
    """
    document = await _locked_document(session, doc_id, None)
    document.classification = None
    document.error = None
    await _queue_classification(
        session, document, reuse=(JobStatus.QUEUED.value,), max_attempts=max_attempts
    )
    document.status = "queued"
    document.updated_at = utc_now()
    await _announce(session, document)
    return document


async def get_task(session: AsyncSession, task_id: str, owner: str) -> TaskOut:
    """The caller's task; `TaskNotFound` for an unknown id or another user's task."""
    query = select(Job).where(Job.id == task_id, Job.owner == owner)
    job = (await session.execute(query)).scalar_one_or_none()
    if job is None:
        raise TaskNotFound(task_id)
    return TaskOut.of(job)

"""Record a stored file: the document row and its classify job in one transaction, or nothing.

The object is stored under a key that nothing points to until the row and its job commit
together; a failure before the COMMIT is sent deletes it. After that the row may exist whatever
the process saw, and a row always has its bytes: the object stays, and the janitor removes it
later if the row never came to be.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.db.models import IDEMPOTENCY_KEY_TTL, Document, IdempotencyKey, utcnow
from upload_service.db.outage import database_required
from upload_service.documents.pipeline.checks import CheckedFile
from upload_service.documents.pipeline.cleanup import delete_quietly
from upload_service.errors import DatabaseUnavailable, IdempotencyConflict
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.jobs.queue import enqueue
from upload_service.observability.context import correlation_id_var
from upload_service.storage.base import Storage

logger = logging.getLogger("upload_service.documents")


@dataclass(frozen=True, slots=True)
class StoredFile:
    """A checked file committed to storage under `key`, for the document `doc_id` to come."""

    doc_id: str
    key: str
    file: CheckedFile


# More statements for the recording's own transaction (a door's bookkeeping that must commit
# with the document or not at all); raising rolls the whole recording back.
StageAlso = Callable[[AsyncSession], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The recorded document, and whether it was an earlier upload replayed for its key."""

    document: Document
    replayed: bool


async def record_stored(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    stored: StoredFile,
    *,
    owner: str,
    idempotency_key: str | None,
    settings: Settings,
    also: StageAlso | None = None,
    keep_object: bool = False,
) -> UploadResult:
    """Record `stored` with its classify job; delete its object when it is surely not recorded.

    `also` stages more statements in the same transaction. With `keep_object` the object stays
    whatever happens: a door that can try the recording again (a resumable upload) keeps it.
    """
    progress = _Progress()
    try:
        result = await _record(sessions, owner, idempotency_key, stored, settings, progress, also)
    except BaseException:
        if keep_object:
            pass  # The door tries again; its own clean-up removes the object if it gives up.
        elif progress.commit_sent:
            # The row may exist, and a row always has its bytes: the object stays. If the
            # commit did not happen, the janitor removes the row-less object later.
            logger.warning(
                "upload %s: commit outcome unknown, object %s kept for the janitor",
                stored.doc_id,
                stored.key,
            )
        else:
            # Certainly no row: remove the object now (the janitor catches a crash here).
            await asyncio.shield(delete_quietly(storage, stored.key))
        raise
    if result.document.id != stored.doc_id:
        # A concurrent twin with the same Idempotency-Key won; ours is a duplicate.
        await delete_quietly(storage, stored.key)
    return result


async def find_idempotency_key(
    sessions: async_sessionmaker[AsyncSession], owner: str, key: str
) -> IdempotencyKey | None:
    """The caller's key if it was used within its time to live; an older one is forgotten."""
    async with database_required("looking up an Idempotency-Key"), sessions() as session:
        found = await session.get(IdempotencyKey, (owner, key))
    if found is None or found.created_at < utcnow() - IDEMPOTENCY_KEY_TTL:
        return None
    return found


async def replay(
    sessions: async_sessionmaker[AsyncSession], key: IdempotencyKey, sha256: str
) -> UploadResult:
    """The document first uploaded with `key`, if this upload's bytes are the same; else 409."""
    if key.sha256 != sha256:
        raise IdempotencyConflict()
    async with database_required("replaying an upload"), sessions() as session:
        document = await session.scalar(select(Document).where(Document.id == key.doc_id))
    if document is None:
        # The first document was deleted since; the key no longer replays anything.
        raise IdempotencyConflict("The document created with this Idempotency-Key was deleted")
    return UploadResult(document=document, replayed=True)


@dataclass(slots=True)
class _Progress:
    """How far the recording got: once COMMIT is sent, whether the row exists is unknown."""

    commit_sent: bool = False


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    owner: str,
    idempotency_key: str | None,
    stored: StoredFile,
    settings: Settings,
    progress: _Progress,
    also: StageAlso | None,
) -> UploadResult:
    """Record the document and its job in one transaction whose COMMIT is never cut short.

    A cancelled caller (the client left, the server is stopping) cancels the transaction only
    while its COMMIT is unsent; a COMMIT already on its way runs to its end, so the database
    decides the outcome rather than where the cancellation landed.
    """
    file = stored.file
    document = Document(
        id=stored.doc_id,
        owner=owner,
        status="queued",
        filename=file.filename,
        content_type=file.content_type,
        size_bytes=file.size,
        sha256=file.sha256,
        storage_key=stored.key,
        correlation_id=correlation_id_var.get(),
    )
    writing = asyncio.ensure_future(
        _write_rows(sessions, owner, idempotency_key, document, settings, progress, also)
    )
    try:
        return await asyncio.shield(writing)
    except asyncio.CancelledError:
        if progress.commit_sent:
            writing.add_done_callback(partial(_log_late_outcome, stored.doc_id))
        else:
            writing.cancel()
        raise


async def _write_rows(
    sessions: async_sessionmaker[AsyncSession],
    owner: str,
    idempotency_key: str | None,
    document: Document,
    settings: Settings,
    progress: _Progress,
    also: StageAlso | None,
) -> UploadResult:
    try:
        async with database_required(f"recording upload {document.id}"), sessions() as session:
            await _stage(session, idempotency_key, document, settings)
            if also is not None:
                await also(session)
            progress.commit_sent = True
            await session.commit()
    except IntegrityError:
        if idempotency_key is None or progress.commit_sent:
            raise
        # A concurrent request with the same key won the insert: answer as it did.
        winner = await find_idempotency_key(sessions, owner, idempotency_key)
        if winner is None:
            raise
        return await replay(sessions, winner, document.sha256)
    except DatabaseUnavailable:
        if not progress.commit_sent:
            raise
        return UploadResult(
            document=await _settle_lost_commit(sessions, document.id), replayed=False
        )
    return UploadResult(document=document, replayed=False)


async def _stage(
    session: AsyncSession, idempotency_key: str | None, document: Document, settings: Settings
) -> None:
    # Every statement is sent before COMMIT, so that COMMIT is the only step whose failure
    # leaves the outcome unknown.
    session.add(document)
    await session.flush()  # The document row first: the key row refers to it.
    if idempotency_key is not None:
        # An expired key is forgotten: its row makes way for this upload's.
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.owner == document.owner,
                IdempotencyKey.key == idempotency_key,
                IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_KEY_TTL,
            )
        )
        session.add(
            IdempotencyKey(
                owner=document.owner,
                key=idempotency_key,
                sha256=document.sha256,
                doc_id=document.id,
            )
        )
    await enqueue(
        session,
        kind="classify",
        doc_id=document.id,
        owner=document.owner,
        correlation_id=document.correlation_id,
        max_attempts=settings.job_max_attempts,
    )
    await session.flush()
    await record_events(await session.connection(), [DocumentChange.of(document)])


async def _settle_lost_commit(sessions: async_sessionmaker[AsyncSession], doc_id: str) -> Document:
    """After a COMMIT whose answer was lost: the document if it is recorded, else a 503.

    Not finding the row proves nothing (the commit may still be landing), so the object is
    kept either way; the janitor deletes it only once it is old and still has no row.
    """
    try:
        async with database_required(f"looking up upload {doc_id}"), sessions() as session:
            found = await session.get(Document, doc_id)
    except DatabaseUnavailable:
        found = None
    if found is None:
        raise DatabaseUnavailable()
    logger.info("upload %s: the commit's answer was lost, but the document is recorded", doc_id)
    return found


def _log_late_outcome(doc_id: str, writing: asyncio.Future[UploadResult]) -> None:
    # Nobody awaits a commit whose request was cancelled: say how it ended.
    if writing.cancelled():
        return
    error = writing.exception()
    if error is None:
        logger.info("upload %s recorded after its request was cancelled", doc_id)
    else:
        logger.warning("upload %s: commit outcome unknown (%s)", doc_id, type(error).__name__)

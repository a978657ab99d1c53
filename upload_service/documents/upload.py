"""The streaming upload: multipart body → checks on the stream → storage → one DB transaction.

All or nothing: the object is written under a key that nothing points to until the document row
and its classify job commit together; any failure before the COMMIT is sent aborts or deletes
the object. After that the row may exist whatever the process saw, and a row always has its
bytes: the object stays, and the janitor removes it later if the row never came to be.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.db.models import (
    IDEMPOTENCY_KEY_TTL,
    Document,
    IdempotencyKey,
    new_doc_id,
    utcnow,
)
from upload_service.db.outage import database_required
from upload_service.documents.filenames import safe_filename
from upload_service.documents.multipart import MultipartFileStream
from upload_service.documents.sniff import ContentSniffer, extension_of
from upload_service.errors import (
    DatabaseUnavailable,
    EmptyFile,
    FileTooLarge,
    IdempotencyConflict,
)
from upload_service.jobs.queue import enqueue
from upload_service.observability.context import correlation_id_var
from upload_service.storage.base import ObjectWriter, Storage
from upload_service.storage.keys import raw_key

logger = logging.getLogger("upload_service.documents")

# Multipart framing around the file: boundaries, part headers, a few small fields.
FRAMING_ALLOWANCE = 64 * 1024


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """What the route knows before the body is read."""

    owner: str
    content_type_header: str
    content_length: int | None
    idempotency_key: str | None


@dataclass(frozen=True, slots=True)
class UploadResult:
    document: Document
    replayed: bool


@dataclass(frozen=True, slots=True)
class _Streamed:
    filename: str
    content_type: str
    size: int
    sha256: str


def refuse_declared_oversize(content_length: int | None, max_bytes: int) -> None:
    """413 before reading a body whose declared length cannot fit under the limit."""
    if content_length is not None and content_length > max_bytes + FRAMING_ALLOWANCE:
        raise FileTooLarge(max_bytes)


async def upload_document(
    request: UploadRequest,
    body: AsyncIterator[bytes],
    *,
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    settings: Settings,
) -> UploadResult:
    """Stream one file to storage and record it with its classify job, or leave nothing behind."""
    max_bytes = settings.max_file_size_bytes
    refuse_declared_oversize(request.content_length, max_bytes)
    reader = MultipartFileStream(request.content_type_header, body)
    part = await reader.open()
    filename = safe_filename(part.filename)
    extension = extension_of(filename)
    sniffer = ContentSniffer(extension, settings.allowed_extensions)

    if request.idempotency_key is not None:
        existing = await _find_key(sessions, request.owner, request.idempotency_key)
        if existing is not None:
            # Same key seen before: hash the body without storing it, then replay or refuse.
            streamed = await _consume(reader, sniffer, filename, max_bytes, writer=None)
            return await _replay(sessions, existing, streamed.sha256)

    doc_id = new_doc_id()
    key = raw_key(doc_id, extension)
    writer = await storage.open_writer(key, "application/octet-stream")
    try:
        streamed = await _consume(reader, sniffer, filename, max_bytes, writer=writer)
        await writer.commit()
    except BaseException:
        await asyncio.shield(writer.abort())
        raise

    progress = _Progress()
    try:
        result = await _record(sessions, request, doc_id, key, streamed, settings, progress)
    except BaseException:
        if progress.commit_sent:
            # The row may exist, and a row always has its bytes: the object stays. If the
            # commit did not happen, the janitor removes the row-less object later.
            logger.warning(
                "upload %s: commit outcome unknown, object %s kept for the janitor", doc_id, key
            )
        else:
            # Certainly no row: remove the object now (the janitor catches a crash here).
            await asyncio.shield(_delete_quietly(storage, key))
        raise
    if result.document.id != doc_id:
        # A concurrent twin with the same Idempotency-Key won; ours is a duplicate.
        await _delete_quietly(storage, key)
    return result


async def _consume(
    reader: MultipartFileStream,
    sniffer: ContentSniffer,
    filename: str,
    max_bytes: int,
    *,
    writer: ObjectWriter | None,
) -> _Streamed:
    # Hashed on the loop, chunk by chunk (64 KiB at most, tens of microseconds each). Hashing in
    # a thread measured slower on every path: the GIL hand-backs cost more than the hash.
    digest = hashlib.sha256()
    size = 0
    async for chunk in reader.chunks():
        size += len(chunk)
        if size > max_bytes:
            raise FileTooLarge(max_bytes)
        sniffer.feed(chunk)
        sniffer.check_prefix()  # Fails fast on a wrong type, before 50 MB of it is stored.
        digest.update(chunk)
        if writer is not None:
            await writer.write(chunk)
    if size == 0:
        raise EmptyFile()
    content_type = sniffer.finish()
    return _Streamed(filename, content_type, size, digest.hexdigest())


@dataclass(slots=True)
class _Progress:
    """How far the recording got: once COMMIT is sent, whether the row exists is unknown."""

    commit_sent: bool = False


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    request: UploadRequest,
    doc_id: str,
    key: str,
    streamed: _Streamed,
    settings: Settings,
    progress: _Progress,
) -> UploadResult:
    """Record the document and its job in one transaction whose COMMIT is never cut short.

    A cancelled caller (the client left, the server is stopping) cancels the transaction only
    while its COMMIT is unsent; a COMMIT already on its way runs to its end, so the database
    decides the outcome rather than where the cancellation landed.
    """
    document = Document(
        id=doc_id,
        owner=request.owner,
        status="queued",
        filename=streamed.filename,
        content_type=streamed.content_type,
        size_bytes=streamed.size,
        sha256=streamed.sha256,
        storage_key=key,
        correlation_id=correlation_id_var.get(),
    )
    writing = asyncio.ensure_future(_write_rows(sessions, request, document, settings, progress))
    try:
        return await asyncio.shield(writing)
    except asyncio.CancelledError:
        if progress.commit_sent:
            writing.add_done_callback(partial(_log_late_outcome, doc_id))
        else:
            writing.cancel()
        raise


async def _write_rows(
    sessions: async_sessionmaker[AsyncSession],
    request: UploadRequest,
    document: Document,
    settings: Settings,
    progress: _Progress,
) -> UploadResult:
    try:
        async with database_required(f"recording upload {document.id}"), sessions() as session:
            await _stage(session, request, document, settings)
            progress.commit_sent = True
            await session.commit()
    except IntegrityError:
        if request.idempotency_key is None or progress.commit_sent:
            raise
        # A concurrent request with the same key won the insert: answer as it did.
        winner = await _find_key(sessions, request.owner, request.idempotency_key)
        if winner is None:
            raise
        return await _replay(sessions, winner, document.sha256)
    except DatabaseUnavailable:
        if not progress.commit_sent:
            raise
        return UploadResult(
            document=await _settle_lost_commit(sessions, document.id), replayed=False
        )
    return UploadResult(document=document, replayed=False)


async def _stage(
    session: AsyncSession, request: UploadRequest, document: Document, settings: Settings
) -> None:
    # Every statement is sent before COMMIT, so that COMMIT is the only step whose failure
    # leaves the outcome unknown.
    session.add(document)
    await session.flush()  # The document row first: the key row refers to it.
    if request.idempotency_key is not None:
        # An expired key is forgotten: its row makes way for this upload's.
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.owner == request.owner,
                IdempotencyKey.key == request.idempotency_key,
                IdempotencyKey.created_at < utcnow() - IDEMPOTENCY_KEY_TTL,
            )
        )
        session.add(
            IdempotencyKey(
                owner=request.owner,
                key=request.idempotency_key,
                sha256=document.sha256,
                doc_id=document.id,
            )
        )
    await enqueue(
        session,
        kind="classify",
        doc_id=document.id,
        owner=request.owner,
        correlation_id=document.correlation_id,
        max_attempts=settings.job_max_attempts,
    )
    await session.flush()


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


async def _find_key(
    sessions: async_sessionmaker[AsyncSession], owner: str, key: str
) -> IdempotencyKey | None:
    """The caller's key if it was used within its time to live; an older one is forgotten."""
    async with database_required("looking up an Idempotency-Key"), sessions() as session:
        found = await session.get(IdempotencyKey, (owner, key))
    if found is None or found.created_at < utcnow() - IDEMPOTENCY_KEY_TTL:
        return None
    return found


async def _replay(
    sessions: async_sessionmaker[AsyncSession], key: IdempotencyKey, sha256: str
) -> UploadResult:
    if key.sha256 != sha256:
        raise IdempotencyConflict()
    async with database_required("replaying an upload"), sessions() as session:
        document = await session.scalar(select(Document).where(Document.id == key.doc_id))
    if document is None:
        # The first document was deleted since; the key no longer replays anything.
        raise IdempotencyConflict("The document created with this Idempotency-Key was deleted")
    return UploadResult(document=document, replayed=True)


async def _delete_quietly(storage: Storage, key: str) -> None:
    try:
        await storage.delete(key)
    except Exception:
        logger.exception("could not delete orphaned object %s", key)

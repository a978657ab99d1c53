"""The streaming upload: multipart body → checks on the stream → storage → one DB transaction.

All or nothing: the object is written under a key that nothing points to until the document row
and its classify job commit together; any failure before that aborts or deletes the object.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.context import correlation_id_var
from upload_service.db.models import Document, IdempotencyKey, new_doc_id
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

    try:
        result = await _record(sessions, request, doc_id, key, streamed, settings)
    except BaseException:
        # The object is stored but has no row: remove it (the janitor catches a crash here).
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


async def _record(
    sessions: async_sessionmaker[AsyncSession],
    request: UploadRequest,
    doc_id: str,
    key: str,
    streamed: _Streamed,
    settings: Settings,
) -> UploadResult:
    correlation_id = correlation_id_var.get()
    document = Document(
        id=doc_id,
        owner=request.owner,
        status="queued",
        filename=streamed.filename,
        content_type=streamed.content_type,
        size_bytes=streamed.size,
        sha256=streamed.sha256,
        storage_key=key,
        correlation_id=correlation_id,
    )
    try:
        async with sessions() as session, session.begin():
            session.add(document)
            await session.flush()  # The document row first: the key row refers to it.
            if request.idempotency_key is not None:
                session.add(
                    IdempotencyKey(
                        owner=request.owner,
                        key=request.idempotency_key,
                        sha256=streamed.sha256,
                        doc_id=doc_id,
                    )
                )
            await enqueue(
                session,
                kind="classify",
                doc_id=doc_id,
                owner=request.owner,
                correlation_id=correlation_id,
                max_attempts=settings.job_max_attempts,
            )
    except IntegrityError:
        if request.idempotency_key is None:
            raise
        # A concurrent request with the same key won the insert: answer as it did.
        winner = await _find_key(sessions, request.owner, request.idempotency_key)
        if winner is None:
            raise
        return await _replay(sessions, winner, streamed.sha256)
    except (OperationalError, DBAPIError, OSError) as exc:
        logger.warning("upload %s not recorded: database error %s", doc_id, type(exc).__name__)
        raise DatabaseUnavailable() from None
    return UploadResult(document=document, replayed=False)


async def _find_key(
    sessions: async_sessionmaker[AsyncSession], owner: str, key: str
) -> IdempotencyKey | None:
    async with sessions() as session:
        return await session.get(IdempotencyKey, (owner, key))


async def _replay(
    sessions: async_sessionmaker[AsyncSession], key: IdempotencyKey, sha256: str
) -> UploadResult:
    if key.sha256 != sha256:
        raise IdempotencyConflict()
    async with sessions() as session:
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

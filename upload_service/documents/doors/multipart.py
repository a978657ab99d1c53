"""The multipart door: `POST /v1/documents` streams one file part through the upload pipeline.

All or nothing: the part's bytes pass the pipeline's checks on their way to storage, and the
stored object is recorded with its classify job or discarded (`pipeline.recording`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.db.models import new_doc_id
from upload_service.documents.multipart import MultipartFileStream
from upload_service.documents.pipeline.checks import StreamCheck
from upload_service.documents.pipeline.cleanup import abort_write
from upload_service.documents.pipeline.recording import (
    StoredFile,
    UploadResult,
    find_idempotency_key,
    record_stored,
    replay,
)
from upload_service.errors import FileTooLarge
from upload_service.storage.base import Storage
from upload_service.storage.keys import raw_key

# Multipart framing around the file: boundaries, part headers, a few small fields.
FRAMING_ALLOWANCE = 64 * 1024


@dataclass(frozen=True, slots=True)
class UploadRequest:
    """What the route knows before the body is read."""

    owner: str
    content_type_header: str
    content_length: int | None
    idempotency_key: str | None


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
    check = StreamCheck(
        part.filename, max_bytes=max_bytes, allowed_extensions=settings.allowed_extensions
    )

    if request.idempotency_key is not None:
        existing = await find_idempotency_key(sessions, request.owner, request.idempotency_key)
        if existing is not None:
            # Same key seen before: hash the body without storing it, then replay or refuse.
            await check.pump(reader.chunks(), None)
            return await replay(sessions, existing, check.finish().sha256)

    doc_id = new_doc_id()
    key = raw_key(doc_id, check.extension)
    writer = await storage.open_writer(key, "application/octet-stream")
    try:
        await check.pump(reader.chunks(), writer)
        checked = check.finish()
        await writer.commit()
    except BaseException:
        await abort_write(writer)
        raise

    return await record_stored(
        sessions,
        storage,
        StoredFile(doc_id, key, checked),
        owner=request.owner,
        idempotency_key=request.idempotency_key,
        settings=settings,
    )

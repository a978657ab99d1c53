"""Complete a direct upload: finish it, verify what S3 holds, and only then record it.

In order, cheapest first: the parts S3 holds against the parts planned (each its exact
length), the assembled object's size against the declaration, its first (and for a DOCX, last)
bytes against the filename's type, then a copy out of staging during which S3 hashes the bytes,
against a declared sha256. Only then are the document and its classify job recorded, with the
upload marked completed in the same transaction. A verdict against the bytes deletes them;
nothing or not every part sent yet leaves the upload open.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import select

from upload_service.db.models import DirectUpload, Document
from upload_service.db.outage import database_required
from upload_service.documents.doors.direct import rows
from upload_service.documents.doors.direct.context import DirectDoor
from upload_service.documents.doors.direct.declare import discard_staged, part_length
from upload_service.documents.doors.direct.schemas import CompletedPartIn
from upload_service.documents.pipeline.checks import CheckedFile, StreamCheck, verify_stored
from upload_service.documents.pipeline.cleanup import delete_quietly
from upload_service.documents.pipeline.recording import StoredFile, UploadResult, record_stored
from upload_service.documents.sniff import HEAD_BYTES, TAIL_BYTES
from upload_service.errors import (
    DeclaredChecksumMismatch,
    DirectUploadBusy,
    DirectUploadGone,
    EmptyFile,
    SizeMismatch,
    UnsupportedFileType,
    UploadIncomplete,
)
from upload_service.storage.direct import HeldPart, PartsRefused
from upload_service.storage.keys import raw_key

logger = logging.getLogger("upload_service.documents")

# Verdicts against the bytes: they are deleted and the upload ends `rejected`.
REFUSALS = (SizeMismatch, UnsupportedFileType, DeclaredChecksumMismatch, EmptyFile)


async def complete(
    door: DirectDoor, owner: str, upload_id: str, parts: list[CompletedPartIn] | None
) -> UploadResult:
    """Verify and record the upload; a repeated call answers with the same document."""
    upload = await rows.find_owned(door.sessions, upload_id, owner)
    if upload.state == "completed":
        return await _recorded(door, upload)
    rows.refuse_gone(upload)
    if not await rows.claim(door.sessions, upload.id):
        # Someone else moved it first: answer by where it stands now.
        upload = await rows.find_owned(door.sessions, upload_id, owner)
        if upload.state == "completed":
            return await _recorded(door, upload)
        rows.refuse_gone(upload)
        raise DirectUploadBusy()
    try:
        stored = await _verify(door, upload, parts)
    except UploadIncomplete:
        await _release(door, upload)
        raise
    except REFUSALS as refusal:
        logger.info("direct upload %s refused: %s", upload.id, refusal.error_code)
        await asyncio.shield(_reject(door, upload, refusal.error_code))
        raise
    except BaseException:
        await _release(door, upload)
        raise
    try:
        result = await record_stored(
            door.sessions,
            door.storage,
            stored,
            owner=owner,
            idempotency_key=None,
            settings=door.settings,
            also=rows.mark_completed(upload.id),
        )
    except BaseException:
        await _release(door, upload)
        raise
    # Recorded: the staged object is a copy nobody needs (the janitor catches a failure here).
    await delete_quietly(door.storage, upload.storage_key)
    return result


async def _verify(
    door: DirectDoor, upload: DirectUpload, client_parts: list[CompletedPartIn] | None
) -> StoredFile:
    settings = door.settings
    check = StreamCheck(
        upload.filename,
        max_bytes=settings.max_file_size_bytes,
        allowed_extensions=settings.allowed_extensions,
    )
    key = upload.storage_key
    if upload.multipart_id is not None:
        held = await door.direct.held_parts(key, upload.multipart_id)
        # None: an earlier `complete` already assembled it (and then lost its lease).
        if held is not None:
            _check_parts(upload, held, client_parts)
            try:
                await door.direct.finish_multipart(
                    key, upload.multipart_id, held, upload.size_bytes
                )
            except PartsRefused as refused:
                raise SizeMismatch(f"S3 would not assemble the parts ({refused})") from None
    stored = await door.direct.read_head(key, HEAD_BYTES)
    if stored is None:
        raise UploadIncomplete("Nothing was uploaded yet")
    size, head = stored.size, stored.head
    if size != upload.size_bytes:
        raise SizeMismatch(
            f"{size} bytes were stored; {upload.size_bytes} were declared",
            details={"declared": upload.size_bytes, "stored": size},
        )
    tail = b""
    if check.tail_needed:
        tail = await door.direct.read_span(key, max(0, size - TAIL_BYTES), size - 1)
    content_type = check.type_from_ends(head, tail)
    # Out of staging: S3 hashes the bytes as it copies them (no byte passes through us).
    target = raw_key(upload.doc_id, check.extension)
    try:
        sha256 = await door.direct.copy_hashed(key, target)
        if content_type is None or sha256 is None:
            # The ends could not tell, or the store hashes nothing: read the copy back once.
            fresh = StreamCheck(
                upload.filename, max_bytes=size, allowed_extensions=settings.allowed_extensions
            )
            read_back = await verify_stored(door.storage, target, fresh)
            content_type, sha256 = read_back.content_type, read_back.sha256
        if upload.sha256 is not None and sha256 != upload.sha256:
            raise DeclaredChecksumMismatch(details={"declared": upload.sha256, "stored": sha256})
    except BaseException:
        await asyncio.shield(delete_quietly(door.storage, target))
        raise
    return StoredFile(
        upload.doc_id, target, CheckedFile(check.filename, content_type, size, sha256)
    )


def _check_parts(
    upload: DirectUpload, held: list[HeldPart], client_parts: list[CompletedPartIn] | None
) -> None:
    """Every held part is one of the plan's at its exact length; all of them are there."""
    for part in held:
        in_plan = part.part_number <= upload.part_count
        planned = part_length(upload, part.part_number) if in_plan else 0
        if part.size != planned:
            raise SizeMismatch(
                f"Part {part.part_number} holds {part.size} bytes; {planned} were planned",
                details={"part_number": part.part_number, "planned": planned, "stored": part.size},
            )
    missing = sorted(set(range(1, upload.part_count + 1)) - {part.part_number for part in held})
    if missing:
        raise UploadIncomplete(
            f"{len(missing)} of {upload.part_count} parts have not arrived",
            details={"missing_parts": missing[:100]},
        )
    if client_parts:
        etags = {part.part_number: part.etag.strip('"') for part in held}
        for sent in client_parts:
            if etags.get(sent.part_number) != sent.etag.strip('"'):
                raise DeclaredChecksumMismatch(
                    f"Part {sent.part_number} in S3 is not the part the client sent"
                )


async def _recorded(door: DirectDoor, upload: DirectUpload) -> UploadResult:
    """The document a completed upload recorded, for a repeated `complete`."""
    async with database_required("replaying a direct upload"), door.sessions() as session:
        document = await session.scalar(
            select(Document).where(Document.id == upload.doc_id, Document.owner == upload.owner)
        )
    if document is None:
        raise DirectUploadGone(f"The document of upload {upload.id} was deleted")
    return UploadResult(document=document, replayed=True)


async def _reject(door: DirectDoor, upload: DirectUpload, outcome: str) -> None:
    await rows.settle(door.sessions, upload.id, "rejected", outcome=outcome)
    try:
        await discard_staged(door, upload)
    except Exception:
        logger.exception("direct upload %s: staged bytes left for the janitor", upload.id)


async def _release(door: DirectDoor, upload: DirectUpload) -> None:
    """Hand the upload back (`pending`) for another `complete`; the lease covers a failure."""
    try:
        await asyncio.shield(rows.settle(door.sessions, upload.id, "pending"))
    except Exception:
        logger.warning("direct upload %s: left to its lease", upload.id)

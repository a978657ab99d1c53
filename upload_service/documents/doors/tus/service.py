"""The tus state machine: create, look at, append to and terminate a resumable upload.

An upload is `open` while bytes come, `finishing` once every byte is saved (see `completion`),
then `done`; or `terminated` (DELETE, content of the wrong type) or `expired` (the janitor).
Every refusal that needs no body (400, 404, 409, 410, 415, 423) is made before a byte of the
body is read. Bytes go through the pipeline's checks on their way to the partial object; the
offset moves only once they are saved, by the request that holds the upload's lease.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

from upload_service.db import uploads as store
from upload_service.db.models import Upload, new_doc_id, utcnow
from upload_service.documents.doors.tus.body import PatchBody
from upload_service.documents.doors.tus.completion import complete
from upload_service.documents.doors.tus.context import TusContext
from upload_service.documents.doors.tus.lease import Held, holding, new_holder
from upload_service.documents.doors.tus.protocol import (
    Checksum,
    is_offset_stream,
    metadata_text,
    parse_checksum,
    parse_length,
    parse_metadata,
)
from upload_service.documents.pipeline.checks import StreamCheck
from upload_service.documents.pipeline.cleanup import delete_quietly
from upload_service.errors import (
    ClientDisconnected,
    EmptyFile,
    FileTooLarge,
    OffsetMismatch,
    TusRequestInvalid,
    UnsupportedFileType,
    UnsupportedMediaType,
    UploadComplete,
    UploadGone,
    UploadLocked,
    UploadNotFound,
    UploadServiceError,
    UploadTimeout,
)
from upload_service.storage.keys import raw_key

logger = logging.getLogger("upload_service.tus")


@dataclass(frozen=True, slots=True)
class Creation:
    """What the route knows of a creation request before its body is read."""

    owner: str
    length: str | None
    defer_length: str | None
    metadata: str | None


@dataclass(frozen=True, slots=True)
class Patch:
    """What the route knows of a PATCH (or a creation's body) before the body is read."""

    content_type: str | None
    offset: str | None
    content_length: int | None
    checksum: str | None


def new_upload_id() -> str:
    """An unguessable, URL-safe id: 144 random bits."""
    return secrets.token_urlsafe(18)


def document_location(upload: Upload) -> str:
    """Where the finished upload's document is."""
    return f"/v1/documents/{upload.doc_id}"


async def create(ctx: TusContext, request: Creation) -> Upload:
    """A new upload, refused before anything is stored when its length or name cannot do."""
    if request.defer_length is not None:
        raise TusRequestInvalid("Upload-Defer-Length is not supported: send Upload-Length")
    length = parse_length(request.length, "Upload-Length")
    max_bytes = ctx.settings.max_file_size_bytes
    if length > max_bytes:
        raise FileTooLarge(max_bytes)
    metadata = parse_metadata(request.metadata)
    check = StreamCheck(
        metadata_text(metadata, "filename"),
        max_bytes=max_bytes,
        allowed_extensions=ctx.settings.allowed_extensions,
    )
    if length == 0:
        raise EmptyFile()
    doc_id = new_doc_id()
    key = raw_key(doc_id, check.extension)
    state = await ctx.storage.partial_objects.begin(key)
    upload = Upload(
        id=new_upload_id(),
        owner=request.owner,
        length=length,
        offset=0,
        upload_metadata=request.metadata,
        filename=check.filename,
        doc_id=doc_id,
        storage_key=key,
        storage_state=state,
        state=store.OPEN,
        expires_at=utcnow() + timedelta(seconds=ctx.settings.tus_upload_expiry_s),
    )
    try:
        await store.create(ctx.sessions, upload, ctx.settings.tus_max_open_uploads)
    except BaseException:
        await asyncio.shield(ctx.storage.partial_objects.discard(key, state))
        raise
    return upload


async def find_owned(ctx: TusContext, upload_id: str, owner: str) -> Upload:
    """The caller's upload; another user's is 404 like an unknown one; a dead one is 410."""
    upload = await store.find(ctx.sessions, upload_id)
    if upload is None or upload.owner != owner:
        raise UploadNotFound()
    if upload.state in store.GONE_STATES:
        raise UploadGone()
    if upload.state == store.OPEN and upload.expires_at <= utcnow():
        raise UploadGone("The upload expired")
    return upload


async def status(ctx: TusContext, upload_id: str, owner: str) -> Upload:
    """The upload for HEAD; one whose bytes are all in but not yet recorded is finished now."""
    upload = await find_owned(ctx, upload_id, owner)
    if upload.state != store.FINISHING:
        return upload
    try:
        return await _finish_pending(ctx, upload)
    except UploadServiceError:
        # HEAD reports what stands: gone if the content was refused, else as it was.
        logger.warning("upload %s: completion on HEAD failed", upload_id, exc_info=True)
        return await find_owned(ctx, upload_id, owner)


async def append(
    ctx: TusContext, upload_id: str, owner: str, patch: Patch, body: AsyncIterator[bytes]
) -> Upload:
    """Append the body at the client's offset; the last bytes make the document."""
    if not is_offset_stream(patch.content_type):
        raise UnsupportedMediaType()
    offset = parse_length(patch.offset, "Upload-Offset")
    checksum = parse_checksum(patch.checksum)
    holder = new_holder()
    # The common case in one statement: the caller's open upload, at this offset, now leased.
    leased = await store.lease_to_append(ctx.engine, upload_id, owner, holder, offset=offset)
    if leased is None:
        upload = await find_owned(ctx, upload_id, owner)  # 404, 410
        if upload.state != store.OPEN:
            return await _append_to_finished(ctx, upload, offset)
        if offset != upload.offset:
            raise OffsetMismatch(upload.offset)
        raise UploadLocked()
    async with holding(ctx.sessions, leased.id, holder) as lease:
        if patch.content_length is not None and offset + patch.content_length > leased.length:
            raise TusRequestInvalid("The body goes past Upload-Length; nothing of it was kept")
        upload = await _write(ctx, leased, lease, body, checksum)
        if upload.offset == upload.length:
            upload = await complete(ctx, upload, lease)
    return upload


async def terminate(ctx: TusContext, upload_id: str, owner: str) -> None:
    """Remove the upload's bytes and storage handles; it answers 410 from then on."""
    upload = await find_owned(ctx, upload_id, owner)
    if upload.state == store.DONE:
        raise UploadComplete("The upload is complete: delete its document instead")
    holder = new_holder()
    if not await store.take_lease(ctx.sessions, upload.id, holder):
        raise await _why_no_lease(ctx, upload_id, owner, None)
    async with holding(ctx.sessions, upload.id, holder) as lease:
        await _end(ctx, upload, lease, store.TERMINATED)


async def _append_to_finished(ctx: TusContext, upload: Upload, offset: int) -> Upload:
    # Every byte is in. An empty PATCH at the end asks for the result (finishing it if a
    # crash left it unrecorded); anything else is a finished upload's business no more. A
    # repeated final PATCH (its answer was lost) lands here too: 409 UPLOAD_COMPLETE with the
    # document's location, and nothing new is created.
    if upload.state == store.FINISHING:
        upload = await _finish_pending(ctx, upload)
    if offset == upload.length and upload.state == store.DONE:
        return upload
    headers = {"Upload-Offset": str(upload.offset)}
    if upload.state == store.DONE:
        headers["Document-Location"] = document_location(upload)
    raise UploadComplete("The upload already has every byte", headers=headers)


async def _finish_pending(ctx: TusContext, upload: Upload) -> Upload:
    """Complete an upload a crash (or a lost answer) left `finishing`, if nobody else is."""
    holder = new_holder()
    if not await store.take_lease(ctx.sessions, upload.id, holder, states=(store.FINISHING,)):
        return upload  # Someone is finishing it right now; HEAD tells them apart later.
    async with holding(ctx.sessions, upload.id, holder) as lease:
        return await complete(ctx, upload, lease)


async def _why_no_lease(
    ctx: TusContext, upload_id: str, owner: str, offset: int | None
) -> UploadServiceError:
    # The compare-and-set said no: look again to say why.
    upload = await find_owned(ctx, upload_id, owner)
    if offset is not None and upload.state == store.OPEN and upload.offset != offset:
        return OffsetMismatch(upload.offset)
    if upload.state == store.DONE:
        return UploadComplete("The upload already has every byte")
    return UploadLocked()


async def _write(
    ctx: TusContext,
    upload: Upload,
    lease: Held,
    chunks: AsyncIterator[bytes],
    checksum: Checksum | None,
) -> Upload:
    check = ctx.checks.take(upload.id, upload.offset)
    if check is None and upload.offset == 0:
        check = StreamCheck(
            upload.filename,
            max_bytes=upload.length,
            allowed_extensions=ctx.settings.allowed_extensions,
        )
    partials = ctx.storage.partial_objects
    appender = await partials.append(upload.storage_key, upload.storage_state, upload.offset)
    body = PatchBody(chunks, upload.length - upload.offset, checksum)
    cut_short: UploadServiceError | None = None
    try:
        if check is not None:
            await check.pump(body, appender)
        else:
            async for chunk in body:
                await appender.write(chunk)
        body.verify_checksum()
    except (ClientDisconnected, UploadTimeout) as exc:
        if checksum is not None:
            # A body cut short cannot match its checksum: none of it is kept.
            await appender.rollback()
            raise
        cut_short = exc  # What arrived is kept: saved below, then the client hears why.
    except UnsupportedFileType:
        await appender.rollback()
        await _end(ctx, upload, lease, store.TERMINATED)  # Not its type: nothing is kept.
        raise
    except BaseException:
        await appender.rollback()
        raise
    offset, state = await appender.save()
    expires_at = utcnow() + timedelta(seconds=ctx.settings.tus_upload_expiry_s)
    if not await store.advance(
        ctx.engine,
        upload,
        lease.holder,
        offset=offset,
        storage_state=state,
        expires_at=expires_at,
    ):
        raise UploadLocked()  # The lease lapsed and was taken: these bytes are not counted.
    lease.released = offset != upload.length
    if check is not None and check.size == offset:
        ctx.checks.keep(upload.id, check)
    upload.offset, upload.storage_state, upload.expires_at = offset, state, expires_at
    if offset == upload.length:
        upload.state = store.FINISHING
    if cut_short is not None:
        raise cut_short
    return upload


async def _end(ctx: TusContext, upload: Upload, lease: Held, state: str) -> None:
    """End the upload (terminated, expired) and remove its bytes: no partial object stays, and
    no object either when its bytes were already all in. A discard that fails leaves it ended
    all the same (410, `terminating`) with its lease let go: the janitor discards again."""
    if not await store.begin_discard(ctx.sessions, upload.id, lease.holder, state):
        raise UploadLocked()  # The lease lapsed and was taken meanwhile.
    ctx.checks.forget(upload.id)
    partials = ctx.storage.partial_objects
    try:
        await asyncio.shield(partials.discard(upload.storage_key, upload.storage_state))
    except Exception:
        logger.warning("upload %s: its bytes are left to the janitor", upload.id, exc_info=True)
        return
    if upload.state == store.FINISHING:
        # `finish` may have put the object in place already: it goes too.
        await asyncio.shield(delete_quietly(ctx.storage, upload.storage_key))
    lease.released = await store.discarded(ctx.sessions, upload.id, lease.holder)

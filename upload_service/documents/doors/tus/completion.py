"""Completion: an upload whose every byte is saved becomes a document, exactly once.

Run by the lease holder once the offset reached the length (state `finishing`): the partial
object is finished under its key, its bytes are judged (the running check when this process has
it, else the object is read back once), then the document, its classify job and the upload's
`done` commit in one transaction. A process that dies anywhere in between leaves the upload
`finishing` with its bytes in place; the next HEAD or PATCH whose lease is free runs this again
(finishing is idempotent, and the document's id was chosen at creation, so no second document).
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.ext.asyncio import AsyncSession

from upload_service.db import uploads as store
from upload_service.db.models import Upload
from upload_service.documents.doors.tus.context import TusContext
from upload_service.documents.doors.tus.lease import Held
from upload_service.documents.pipeline.checks import CheckedFile, StreamCheck, verify_stored
from upload_service.documents.pipeline.cleanup import delete_quietly
from upload_service.documents.pipeline.recording import StoredFile, record_stored
from upload_service.errors import EmptyFile, UnsupportedFileType, UploadLocked
from upload_service.observability import metrics

logger = logging.getLogger("upload_service.tus")


async def complete(ctx: TusContext, upload: Upload, lease: Held) -> Upload:
    """Finish the object, judge it, record the document; the upload is then `done`."""
    storage = ctx.storage
    await storage.partial_objects.finish(upload.storage_key, upload.storage_state)
    try:
        checked = await _judge(ctx, upload)
    except (UnsupportedFileType, EmptyFile):
        # Not a document after all (a DOCX without its parts shows only at the end).
        if await store.end(ctx.sessions, upload.id, lease.holder, store.TERMINATED):
            lease.released = True
            await asyncio.shield(delete_quietly(storage, upload.storage_key))
        raise

    async def mark_done(session: AsyncSession) -> None:
        if not await store.mark_done(session, upload.id, lease.holder):
            raise UploadLocked()  # Lost the lease: whoever holds it now records it.

    result = await record_stored(
        ctx.sessions,
        storage,
        StoredFile(upload.doc_id, upload.storage_key, checked),
        owner=upload.owner,
        idempotency_key=None,
        settings=ctx.settings,
        also=mark_done,
        keep_object=True,
    )
    lease.released = True  # `done` let it go in the recording's transaction.
    metrics.record_upload(result.document.size_bytes)
    upload.state = store.DONE
    return upload


async def _judge(ctx: TusContext, upload: Upload) -> CheckedFile:
    check = ctx.checks.take(upload.id, upload.length)
    ctx.checks.forget(upload.id)
    if check is not None:
        return check.finish()
    # The bytes came (at least partly) through another process, or before a restart.
    metrics.record_tus_rehash()
    logger.info("upload %s: no running check here, reading the object back", upload.id)
    fresh = StreamCheck(
        upload.filename,
        max_bytes=upload.length,
        allowed_extensions=ctx.settings.allowed_extensions,
    )
    return await verify_stored(ctx.storage, upload.storage_key, fresh)

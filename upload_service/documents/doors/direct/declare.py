"""Declare a direct upload, sign its parts, report where it stands, cancel it.

The service chooses the key (under the caller's staging prefix) and the parts; a client's
declared size is checked against the limit here and bounds every signature.
"""

from __future__ import annotations

import base64
import math
from datetime import timedelta

from upload_service.db.models import DirectUpload, new_direct_upload_id, utcnow
from upload_service.documents.doors.direct import rows
from upload_service.documents.doors.direct.context import DirectDoor
from upload_service.documents.doors.direct.schemas import (
    MAX_PARTS,
    DirectUploadIn,
    DirectUploadOut,
    DirectUploadStatusOut,
    HeldPartOut,
    PartUrlOut,
    PartUrlsOut,
    PresignedPostOut,
)
from upload_service.documents.pipeline.checks import StreamCheck
from upload_service.errors import (
    DirectUploadBusy,
    DirectUploadComplete,
    EmptyFile,
    FileTooLarge,
    RequestValidationFailed,
)
from upload_service.storage.keys import staging_key

MIB = 1024 * 1024
# Parts of 8 MiB (S3's floor is 5 MiB), larger only where 10,000 of them would not hold the file.
DEFAULT_PART_SIZE = 8 * MIB


def plan_parts(size: int) -> tuple[int, int]:
    """The part size and count of a multipart upload of `size` bytes."""
    part_size = max(DEFAULT_PART_SIZE, math.ceil(size / MAX_PARTS / MIB) * MIB)
    return part_size, math.ceil(size / part_size)


def part_length(upload: DirectUpload, part_number: int) -> int:
    """The exact length of part `part_number`: `part_size`, the last one what remains."""
    if part_number < upload.part_count:
        return upload.part_size
    return upload.size_bytes - upload.part_size * (upload.part_count - 1)


async def declare(door: DirectDoor, owner: str, declared: DirectUploadIn) -> DirectUploadOut:
    """Check the declaration, record the upload, and sign what the client needs to send it."""
    settings = door.settings
    # Refuses a name whose extension is not accepted (422) before anything exists.
    check = StreamCheck(
        declared.filename,
        max_bytes=settings.max_file_size_bytes,
        allowed_extensions=settings.allowed_extensions,
    )
    if declared.size == 0:
        raise EmptyFile()
    if declared.size > settings.max_file_size_bytes:
        raise FileTooLarge(settings.max_file_size_bytes)
    upload_id = new_direct_upload_id()
    key = staging_key(owner, upload_id)
    single = declared.size <= settings.direct_single_max_mb * MIB
    part_size, part_count = (declared.size, 1) if single else plan_parts(declared.size)
    ttl_s = settings.direct_url_ttl_s
    upload = DirectUpload(
        id=upload_id,
        owner=owner,
        filename=check.filename,
        content_type=declared.content_type,
        size_bytes=declared.size,
        sha256=declared.sha256.lower() if declared.sha256 else None,
        storage_key=key,
        part_size=part_size,
        part_count=part_count,
        state="pending",
        expires_at=utcnow() + timedelta(seconds=ttl_s),
    )
    post = None
    if single:
        sha256_b64 = (
            base64.b64encode(bytes.fromhex(upload.sha256)).decode() if upload.sha256 else None
        )
        signed = door.direct.presign_post(
            key,
            max_size=declared.size,
            content_type=declared.content_type,
            sha256_b64=sha256_b64,
            ttl_s=ttl_s,
        )
        post = PresignedPostOut(url=signed.url, fields=signed.fields)
    else:
        upload.multipart_id = await door.direct.start_multipart(key, declared.content_type)
    try:
        await rows.insert(door.sessions, upload)
    except BaseException:
        if upload.multipart_id is not None:
            await door.direct.abort_multipart(key, upload.multipart_id)
        raise
    return DirectUploadOut(
        upload_id=upload_id,
        key=key,
        expires_at=upload.expires_at,
        size=declared.size,
        part_size=part_size,
        part_count=part_count,
        method="post" if single else "multipart",
        post=post,
    )


async def sign_parts(
    door: DirectDoor, owner: str, upload_id: str, part_numbers: list[int]
) -> PartUrlsOut:
    """URLs for the asked parts, each with its exact length signed; the upload lives on."""
    upload = await rows.find_owned(door.sessions, upload_id, owner)
    _refuse_unless_open(upload)
    if upload.multipart_id is None:
        raise _invalid("part_numbers", "This upload is a single POST; it has no parts")
    beyond = sorted(n for n in set(part_numbers) if n > upload.part_count)
    if beyond:
        raise _invalid("part_numbers", f"This upload has parts 1 to {upload.part_count} only")
    ttl_s = door.settings.direct_url_ttl_s
    expires_at = utcnow() + timedelta(seconds=ttl_s)
    # Signed URLs keep the upload alive: it expires a URL's lifetime after the last signing.
    await rows.extend(door.sessions, upload, expires_at)
    numbers = sorted(set(part_numbers))
    sizes = {number: part_length(upload, number) for number in numbers}
    urls = door.direct.presign_parts(upload.storage_key, upload.multipart_id, sizes, ttl_s)
    parts = [
        PartUrlOut(part_number=number, size=sizes[number], url=urls[number]) for number in numbers
    ]
    return PartUrlsOut(parts=parts, expires_at=expires_at)


async def describe(door: DirectDoor, owner: str, upload_id: str) -> DirectUploadStatusOut:
    """The upload's state, and for an open multipart upload the parts S3 holds (to resume)."""
    upload = await rows.find_owned(door.sessions, upload_id, owner)
    rows.refuse_gone(upload)
    held: list[HeldPartOut] = []
    if upload.state == "pending" and upload.multipart_id is not None:
        found = await door.direct.held_parts(upload.storage_key, upload.multipart_id)
        held = [
            HeldPartOut(part_number=p.part_number, size=p.size, etag=p.etag) for p in found or []
        ]
    return DirectUploadStatusOut(
        upload_id=upload.id,
        state=upload.state,
        filename=upload.filename,
        size=upload.size_bytes,
        part_size=upload.part_size,
        part_count=upload.part_count,
        method="multipart" if upload.multipart_id is not None else "post",
        expires_at=upload.expires_at,
        doc_id=upload.doc_id if upload.state == "completed" else None,
        parts=held,
    )


async def cancel(door: DirectDoor, owner: str, upload_id: str) -> None:
    """Remove the staged bytes and the multipart upload; later requests answer 410."""
    upload = await rows.find_owned(door.sessions, upload_id, owner)
    _refuse_unless_open(upload)
    if not await rows.settle(door.sessions, upload.id, "cancelled", from_state="pending"):
        # A `complete` holds it (or just finished it): cancelling now would race the record.
        current = await rows.find_owned(door.sessions, upload_id, owner)
        _refuse_unless_open(current)
        raise DirectUploadBusy()
    await discard_staged(door, upload)


async def discard_staged(door: DirectDoor, upload: DirectUpload) -> None:
    """Remove whatever the client sent for `upload`: the open multipart upload, the object."""
    if upload.multipart_id is not None:
        await door.direct.abort_multipart(upload.storage_key, upload.multipart_id)
    await door.storage.delete(upload.storage_key)


def _refuse_unless_open(upload: DirectUpload) -> None:
    if upload.state == "completed":
        raise DirectUploadComplete()
    rows.refuse_gone(upload)


def _invalid(field: str, message: str) -> RequestValidationFailed:
    return RequestValidationFailed(message, details={"field": field})

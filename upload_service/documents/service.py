"""Reading and managing documents: each call is scoped to its owner (others' are 404)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, Table, bindparam, delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.config import Settings
from upload_service.db.models import Base, Document
from upload_service.db.outage import database_required
from upload_service.db.reads import Reader
from upload_service.documents.schemas import DocumentOut, DocumentPage
from upload_service.errors import DocumentContentMissing, DocumentNotFound, RangeNotSatisfiable
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.jobs.notifications import document_event, enqueue_notification
from upload_service.jobs.queue import enqueue, utc_now
from upload_service.storage.base import ByteRange, Storage

logger = logging.getLogger("upload_service.documents")
_DOC_ID = re.compile(r"^doc_[0-9A-HJKMNP-TV-Z]{26}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
BATCH_CHECK_CONCURRENCY = 16
_TABLE: Table = Base.metadata.tables["documents"]

# Built once: composing the expression per request costs more than the statement's round trip.
_BY_ID_AND_OWNER = select(_TABLE).where(
    _TABLE.c.id == bindparam("doc_id"), _TABLE.c.owner == bindparam("owner")
)


def _page(*, after: bool, status: bool) -> Select[Any]:
    query = select(_TABLE).where(_TABLE.c.owner == bindparam("owner"))
    if after:
        query = query.where(_TABLE.c.id < bindparam("after"))
    if status:
        query = query.where(_TABLE.c.status == bindparam("status"))
    return query.order_by(_TABLE.c.id.desc()).limit(bindparam("limit"))


# Conditional, so that of two concurrent deletes only the one that removed the row succeeds.
_DELETE_OWNED = (
    delete(_TABLE)
    .where(_TABLE.c.id == bindparam("doc_id"), _TABLE.c.owner == bindparam("owner"))
    .returning(_TABLE.c.storage_key)
)
CONTENT_MISSING = "CONTENT_MISSING"
# Only a document not already failed changes (and is announced) once.
_MARK_CONTENT_MISSING = (
    update(_TABLE)
    .where(
        _TABLE.c.id == bindparam("doc_id"),
        _TABLE.c.owner == bindparam("doc_owner"),
        _TABLE.c.status != "failed",
    )
    .values(
        status="failed", classification=None, error=bindparam("error"), updated_at=bindparam("now")
    )
    .returning(*_TABLE.c)
)


# A page of the owner's documents, by (after a cursor, filtered by status).
_PAGES = {
    (after, status): _page(after=after, status=status)
    for after in (False, True)
    for status in (False, True)
}


async def get_document(session: AsyncSession, doc_id: str, owner: str) -> Document:
    """The caller's document as an ORM object to change, or `DocumentNotFound`."""
    document = await session.get(Document, doc_id) if _DOC_ID.match(doc_id) else None
    if document is None or document.owner != owner:
        raise DocumentNotFound(doc_id)
    return document


async def read_document(reader: Reader, doc_id: str, owner: str) -> DocumentOut:
    """The caller's document, read with one statement; `DocumentNotFound` otherwise.

    The owner is part of the query, so another user's document is indistinguishable from a
    missing one.
    """
    if not _DOC_ID.match(doc_id):
        raise DocumentNotFound(doc_id)
    row = await reader.one(_BY_ID_AND_OWNER, {"doc_id": doc_id, "owner": owner})
    if row is None:
        raise DocumentNotFound(doc_id)
    return DocumentOut.of_row(row)


def encode_cursor(doc_id: str) -> str:
    """An opaque cursor for the page after `doc_id`."""
    return base64.urlsafe_b64encode(doc_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    """The document id a cursor points after; `ValueError` when it is not one of ours."""
    try:
        doc_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("malformed cursor") from None
    if not _DOC_ID.match(doc_id):
        raise ValueError("malformed cursor")
    return doc_id


async def list_documents(
    reader: Reader,
    owner: str,
    *,
    limit: int,
    after: str | None = None,
    status: str | None = None,
) -> DocumentPage:
    """The owner's documents newest first, keyset-paginated on the (time-sortable) id."""
    query = _PAGES[after is not None, status is not None]
    params = {"owner": owner, "after": after, "status": status, "limit": limit + 1}
    rows = await reader.all(query, params)
    next_cursor = encode_cursor(rows[limit - 1]["id"]) if len(rows) > limit else None
    return DocumentPage(
        items=[DocumentOut.of_row(row) for row in rows[:limit]], next_cursor=next_cursor
    )


async def delete_document(session: AsyncSession, doc_id: str, owner: str) -> None:
    """Remove the row now; a durable purge job removes the bytes (retried if storage is down).

    One statement deletes and tells whether it did: a concurrent delete of the same document
    waits for this one's row lock, then finds nothing, and is 404.
    """
    if not _DOC_ID.match(doc_id):
        raise DocumentNotFound(doc_id)
    params = {"doc_id": doc_id, "owner": owner}
    storage_key = (await session.execute(_DELETE_OWNED, params)).scalar_one_or_none()
    if storage_key is None:
        raise DocumentNotFound(doc_id)
    await enqueue(
        session, kind="purge", doc_id=doc_id, owner=owner, payload={"storage_key": storage_key}
    )
    await record_events(await session.connection(), [DocumentChange.deleted(owner, doc_id)])


async def check_documents(
    reader: Reader, storage: Storage, owner: str, doc_ids: list[str]
) -> dict[str, bool]:
    """For each id: the caller's document exists and its object is in storage.

    The connection goes back to the pool before the storage checks start.
    """
    wanted = [doc_id for doc_id in dict.fromkeys(doc_ids) if _DOC_ID.match(doc_id)]
    async with database_required("batch check"), reader.engine.connect() as db:
        found = await db.execute(
            select(Document.id, Document.storage_key).where(
                Document.owner == owner, Document.id.in_(wanted)
            )
        )
        keys: dict[str, str] = {doc_id: key for doc_id, key in found}
    gate = asyncio.Semaphore(BATCH_CHECK_CONCURRENCY)

    async def present(key: str) -> bool:
        async with gate:
            return await storage.exists(key)

    checked = await asyncio.gather(*(present(key) for key in keys.values()))
    stored = dict(zip(keys, checked, strict=True))
    return {doc_id: stored.get(doc_id, False) for doc_id in doc_ids}


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """A single `bytes=a-b` range clipped to the object; None for no (or an ignorable) range."""
    if header is None:
        return None
    match = _RANGE.match(header.strip())
    if match is None:
        return None  # Multiple or malformed ranges: RFC 9110 lets us send the whole object.
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # Suffix: the last N bytes.
        length = int(last)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return ByteRange(max(0, size - length), size - 1)
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise RangeNotSatisfiable(size)
    return ByteRange(start, end)


@dataclass(frozen=True, slots=True)
class Download:
    """What the route needs to stream a document back."""

    document: DocumentOut
    byte_range: ByteRange | None
    chunks: AsyncIterator[bytes] | None  # None when the client's copy is current (304)


@dataclass(frozen=True, slots=True)
class Downloads:
    """What a download needs besides the caller's request: where rows and bytes are."""

    reader: Reader
    storage: Storage
    sessions: async_sessionmaker[AsyncSession]
    settings: Settings


async def open_download(
    where: Downloads,
    doc_id: str,
    owner: str,
    *,
    range_header: str | None,
    if_none_match: str | None,
) -> Download:
    """Resolve a download: 304 check, range, and the stream of bytes.

    A document whose bytes are gone from storage is 404 with a message that says so, and is
    marked `failed` (`CONTENT_MISSING`) so that lists and the webhook stop offering it as
    downloadable.
    """
    document = await read_document(where.reader, doc_id, owner)
    if document.error is not None and document.error.code == CONTENT_MISSING:
        raise DocumentContentMissing(doc_id)
    etag = f'"{document.sha256}"'
    if if_none_match is not None and _matches(if_none_match, etag):
        return Download(document, None, None)
    byte_range = parse_range(range_header, document.size_bytes)
    chunks = where.storage.read(document.storage_key, byte_range)
    # Read the first chunk now: a missing or unreachable object is then an error response,
    # not a 200 whose body breaks off after the headers.
    try:
        first = await anext(chunks, b"")
    except FileNotFoundError:
        await _mark_content_missing(where, doc_id, owner)
        raise DocumentContentMissing(doc_id) from None
    return Download(document, byte_range, _prepend(first, chunks))


async def _mark_content_missing(where: Downloads, doc_id: str, owner: str) -> None:
    error = {"code": CONTENT_MISSING, "message": "The document's bytes are missing from storage"}
    now = utc_now()
    async with database_required("marking missing content"), where.sessions.begin() as session:
        params = {"doc_id": doc_id, "doc_owner": owner, "error": error, "now": now}
        marked = (await session.execute(_MARK_CONTENT_MISSING, params)).mappings().one_or_none()
        if marked is None:
            return  # Already failed, or deleted meanwhile.
        connection = await session.connection()
        await record_events(connection, [DocumentChange.updated(marked)])
        logger.error("document %s: its object is missing from storage; marked failed", doc_id)
        body = document_event(
            event="document.failed",
            doc_id=doc_id,
            owner=owner,
            status="failed",
            error=error,
            occurred_at=now,
        )
        await enqueue_notification(
            connection, where.settings, body, correlation_id=marked["correlation_id"]
        )


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk

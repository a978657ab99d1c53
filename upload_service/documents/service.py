"""Reading and managing documents: each call is scoped to its owner (others' are 404)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from upload_service.db.models import Document
from upload_service.db.outage import database_required
from upload_service.db.reads import Reader
from upload_service.documents.schemas import DocumentOut, DocumentPage
from upload_service.errors import DocumentNotFound, RangeNotSatisfiable
from upload_service.jobs.queue import enqueue
from upload_service.storage.base import ByteRange, Storage

_DOC_ID = re.compile(r"^doc_[0-9A-HJKMNP-TV-Z]{26}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
BATCH_CHECK_CONCURRENCY = 16
_TABLE = Document.__table__

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
    """Remove the row now; a durable purge job removes the bytes (retried if storage is down)."""
    document = await get_document(session, doc_id, owner)
    await session.delete(document)
    await enqueue(
        session,
        kind="purge",
        doc_id=doc_id,
        owner=owner,
        payload={"storage_key": document.storage_key},
    )


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


async def open_download(
    reader: Reader,
    storage: Storage,
    doc_id: str,
    owner: str,
    *,
    range_header: str | None,
    if_none_match: str | None,
) -> Download:
    """Resolve a download: 304 check, range, and the stream of bytes."""
    document = await read_document(reader, doc_id, owner)
    etag = f'"{document.sha256}"'
    if if_none_match is not None and _matches(if_none_match, etag):
        return Download(document, None, None)
    byte_range = parse_range(range_header, document.size_bytes)
    chunks = storage.read(document.storage_key, byte_range)
    # Read the first chunk now: a missing or unreachable object is then an error response,
    # not a 200 whose body breaks off after the headers.
    first = await anext(chunks, b"")
    return Download(document, byte_range, _prepend(first, chunks))


def _matches(if_none_match: str, etag: str) -> bool:
    tags = [tag.strip().removeprefix("W/") for tag in if_none_match.split(",")]
    return "*" in tags or etag in tags


async def _prepend(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first:
        yield first
    async for chunk in rest:
        yield chunk

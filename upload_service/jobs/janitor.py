"""The `janitor` job: clean up what a crash between an upload's object write and row commit left.

An upload stores its object first, then commits the document row; a process that dies in
between leaves an object nobody points to, and perhaps an unfinished write (an S3 multipart
upload, a local temporary file). Both are removed once older than `JANITOR_ORPHAN_AGE_S`, never
sooner: a younger object may belong to an upload that is about to commit its row. Rows are
looked up a batch of objects at a time, while the listing streams.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import Base
from upload_service.jobs.handler_context import Effects, HandlerContext
from upload_service.jobs.leases import ClaimedJob
from upload_service.jobs.queue import utc_now
from upload_service.storage.base import Storage
from upload_service.storage.keys import RAW_PREFIX, doc_id_of

logger = logging.getLogger(__name__)

ROW_CHECK_BATCH = 500

DOCUMENTS: Table = Base.metadata.tables["documents"]
_EXISTING = select(DOCUMENTS.c.id).where(DOCUMENTS.c.id.in_(bindparam("ids", expanding=True)))


@dataclass(frozen=True, slots=True)
class OrphanSweep:
    """What one sweep of `raw/` found: old objects checked against rows, and those removed."""

    checked: int = 0
    removed: int = 0


async def remove_orphans(
    engine: AsyncEngine,
    storage: Storage,
    *,
    older_than: timedelta,
    now: datetime | None = None,
) -> OrphanSweep:
    """Delete objects under `raw/` older than `older_than` whose document has no row."""
    cutoff = (now or utc_now()) - older_than
    checked = removed = 0
    candidates: dict[str, str] = {}
    async for stored in storage.list_objects(RAW_PREFIX):
        doc_id = doc_id_of(stored.key)
        # A key we did not make is not ours to judge; a young one may be committing its row.
        if doc_id is None or stored.modified_at >= cutoff:
            continue
        candidates[stored.key] = doc_id
        if len(candidates) >= ROW_CHECK_BATCH:
            checked += len(candidates)
            removed += await _remove_rowless(engine, storage, candidates)
            candidates = {}
    if candidates:
        checked += len(candidates)
        removed += await _remove_rowless(engine, storage, candidates)
    return OrphanSweep(checked=checked, removed=removed)


async def _remove_rowless(engine: AsyncEngine, storage: Storage, candidates: dict[str, str]) -> int:
    # Looked up after the listing saw the objects: a row committed since then keeps its object.
    async with engine.connect() as conn:
        result = await conn.execute(_EXISTING, {"ids": sorted(set(candidates.values()))})
        with_rows = set(result.scalars())
    removed = 0
    for key, doc_id in candidates.items():
        if doc_id not in with_rows:
            await storage.delete(key)
            logger.info("janitor removed %s: no document row", key)
            removed += 1
    return removed


async def janitor(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Abort unfinished uploads and delete row-less objects, both older than the orphan age."""
    older_than = timedelta(seconds=ctx.settings.janitor_orphan_age_s)
    aborted = await ctx.storage.abort_incomplete_uploads(older_than, RAW_PREFIX)
    sweep = await remove_orphans(ctx.engine, ctx.storage, older_than=older_than)
    logger.info(
        "janitor %s: %d unfinished upload(s) aborted, %d of %d old object(s) removed (no row)",
        job.id,
        aborted,
        sweep.removed,
        sweep.checked,
    )
    return None

"""The `janitor` job: clean up what a crash between an upload's object write and row commit left.

An upload stores its object first, then commits the document row; a process that dies in
between, or a COMMIT whose outcome it never learnt, leaves an object nobody may point to, and
perhaps an unfinished write (an S3 multipart upload, a local temporary file). Both are removed
once older than `JANITOR_ORPHAN_AGE_S`, never sooner: a younger object may belong to an upload
that is about to commit its row. Rows are looked up a batch of objects at a time, while the
listing streams, and looked up again `JANITOR_SETTLE_S` later before anything is deleted: S3 dates
an object from the start of its multipart upload, not its completion, so the object of a long
upload that completed a moment ago looks old while its row is a moment from committing.

It also expires resumable uploads past their time, discards again the bytes of ended ones whose
discard failed (`upload_expiry`), and spares the objects and unfinished writes of the live
ones; removes direct uploads never completed (`direct_expiry`; its
abort of unfinished writes stays under `raw/`, so a direct upload's open multipart upload under
`staging/` is alive until that upload expires); forgets `Idempotency-Key`s past their 24
hours, and events past `EVENTS_RETENTION_S`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import IDEMPOTENCY_KEY_TTL, Base, IdempotencyKey
from upload_service.events.retention import purge_old_events
from upload_service.events.stream_slots import purge_expired_leases
from upload_service.jobs.direct_expiry import expire_direct_uploads
from upload_service.jobs.handler_context import Effects, HandlerContext
from upload_service.jobs.leases import ClaimedJob
from upload_service.jobs.queue import utc_now
from upload_service.jobs.upload_expiry import (
    expire_uploads,
    finish_discards,
    live_upload_keys,
    purge_ended_uploads,
)
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
    settle_s: float = 0.0,
    keep: Collection[str] = (),
) -> OrphanSweep:
    """Delete objects under `raw/` older than `older_than` whose document has no row.

    An object is deleted only if its row is missing at two looks `settle_s` apart; the keys in
    `keep` (unfinished resumable uploads) never are.
    """
    cutoff = (now or utc_now()) - older_than
    checked = removed = 0
    candidates: dict[str, str] = {}
    async for stored in storage.list_objects(RAW_PREFIX):
        doc_id = doc_id_of(stored.key)
        # A key we did not make is not ours to judge; a young one may be committing its row.
        if doc_id is None or stored.modified_at >= cutoff or stored.key in keep:
            continue
        candidates[stored.key] = doc_id
        if len(candidates) >= ROW_CHECK_BATCH:
            checked += len(candidates)
            removed += await _remove_rowless(engine, storage, candidates, settle_s)
            candidates = {}
    if candidates:
        checked += len(candidates)
        removed += await _remove_rowless(engine, storage, candidates, settle_s)
    return OrphanSweep(checked=checked, removed=removed)


async def _remove_rowless(
    engine: AsyncEngine, storage: Storage, candidates: dict[str, str], settle_s: float
) -> int:
    # Looked up after the listing saw the objects: a row committed since then keeps its object.
    first_look = time.monotonic()
    rowless = await _without_rows(engine, candidates)
    if rowless and settle_s > 0:
        await asyncio.sleep(max(0.0, first_look + settle_s - time.monotonic()))
        rowless = await _without_rows(engine, rowless)
    for key in rowless:
        await storage.delete(key)
        logger.info("janitor removed %s: no document row", key)
    return len(rowless)


async def _without_rows(engine: AsyncEngine, candidates: dict[str, str]) -> dict[str, str]:
    async with engine.connect() as conn:
        result = await conn.execute(_EXISTING, {"ids": sorted(set(candidates.values()))})
        with_rows = set(result.scalars())
    return {key: doc_id for key, doc_id in candidates.items() if doc_id not in with_rows}


async def purge_expired_keys(engine: AsyncEngine, *, now: datetime | None = None) -> int:
    """Delete `Idempotency-Key`s older than their time to live (already ignored by uploads)."""
    cutoff = (now or utc_now()) - IDEMPOTENCY_KEY_TTL
    async with engine.begin() as conn:
        result = await conn.execute(
            delete(IdempotencyKey).where(IdempotencyKey.created_at < cutoff)
        )
    return int(result.rowcount)


async def janitor(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Expire old resumable and direct uploads, abort crashed writes, delete old row-less
    objects, forget expired idempotency keys, old events and the stream leases of dead
    processes."""
    older_than = timedelta(seconds=ctx.settings.janitor_orphan_age_s)
    uploads_expired = await expire_uploads(ctx.engine, ctx.storage)
    rediscarded = await finish_discards(ctx.engine, ctx.storage)
    # Read after the expiry: the keys of uploads still alive, whose writes and objects stay.
    live = await live_upload_keys(ctx.engine)
    aborted = await ctx.storage.abort_incomplete_uploads(older_than, RAW_PREFIX, keep=live)
    # A second look later than the orphan age itself would protect nothing more.
    settle_s = min(ctx.settings.janitor_settle_s, ctx.settings.janitor_orphan_age_s)
    sweep = await remove_orphans(
        ctx.engine, ctx.storage, older_than=older_than, settle_s=settle_s, keep=live
    )
    expired = await purge_expired_keys(ctx.engine)
    forgotten = await purge_ended_uploads(ctx.engine)
    direct = await expire_direct_uploads(ctx.engine, ctx.storage, older_than=older_than)
    events = await purge_old_events(ctx.engine, retention_s=ctx.settings.events_retention_s)
    leases = await purge_expired_leases(ctx.engine)
    logger.info(
        "janitor %s: %d resumable upload(s) expired, %d ended one(s) discarded on a retry, "
        "%d ended one(s) forgotten, %d unfinished "
        "write(s) aborted, %d of %d old object(s) removed (no row), %d expired "
        "Idempotency-Key(s) forgotten, %d direct upload(s) expired, %d staged leftover(s) "
        "removed, %d old event(s) forgotten, %d expired stream lease(s) removed",
        job.id,
        uploads_expired,
        rediscarded,
        forgotten,
        aborted,
        sweep.removed,
        sweep.checked,
        expired,
        direct.expired,
        direct.leftovers,
        events,
        leases,
    )
    return None

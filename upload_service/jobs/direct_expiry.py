"""The janitor's share of direct uploads: what clients began and never completed goes.

An upload past its expiry and grace (`DIRECT_UPLOAD_GRACE`) is marked `expired` first (so a
late `complete` answers 410 and cannot race the removal), then its open multipart upload is
aborted and its staged object deleted. Staged objects that outlived their upload's end (a
deletion that failed after `complete` or a cancel) are swept too, once older than the orphan age.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Table, and_, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import DIRECT_UPLOAD_GRACE, Base
from upload_service.jobs.queue import utc_now
from upload_service.storage.base import Storage
from upload_service.storage.keys import STAGING_PREFIX

logger = logging.getLogger(__name__)

EXPIRY_BATCH = 500
UPLOADS: Table = Base.metadata.tables["direct_uploads"]
_OPEN = ("pending", "completing")


@dataclass(frozen=True, slots=True)
class DirectSweep:
    """What one sweep did: uploads expired, and staged objects removed without a live upload."""

    expired: int = 0
    leftovers: int = 0


def _lapsed(now: datetime) -> ColumnElement[bool]:
    # Pending, or held by a `complete` whose lease ran out: nobody is finishing it.
    return and_(
        or_(
            UPLOADS.c.state == "pending",
            and_(UPLOADS.c.state == "completing", UPLOADS.c.lease_until < now),
        ),
        UPLOADS.c.expires_at < now - DIRECT_UPLOAD_GRACE,
    )


async def expire_direct_uploads(
    engine: AsyncEngine,
    storage: Storage,
    *,
    older_than: timedelta,
    now: datetime | None = None,
) -> DirectSweep:
    """Expire lapsed uploads and remove their bytes; remove staged leftovers of ended ones."""
    now = now or utc_now()
    lapsed = _lapsed(now)
    expired = 0
    async with engine.connect() as conn:
        found = (
            await conn.execute(
                select(UPLOADS.c.id, UPLOADS.c.storage_key).where(lapsed).limit(EXPIRY_BATCH)
            )
        ).all()
    for upload_id, key in found:
        async with engine.begin() as conn:
            marked = await conn.execute(
                update(UPLOADS)
                .where(UPLOADS.c.id == upload_id, lapsed)
                .values(state="expired", outcome="UPLOAD_GONE", lease_until=None, updated_at=now)
            )
        if not marked.rowcount:
            continue  # Completed or cancelled meanwhile.
        # Its URLs are dead: nothing can still be writing under the key.
        await storage.abort_incomplete_uploads(timedelta(0), prefix=key)
        await storage.delete(key)
        expired += 1
        logger.info("janitor expired direct upload %s", upload_id)
    leftovers = await _remove_leftovers(engine, storage, now - older_than)
    return DirectSweep(expired=expired, leftovers=leftovers)


_LIVE = select(UPLOADS.c.id).where(
    UPLOADS.c.id.in_(bindparam("ids", expanding=True)), UPLOADS.c.state.in_(_OPEN)
)


async def _remove_leftovers(engine: AsyncEngine, storage: Storage, cutoff: datetime) -> int:
    """Delete old staged objects whose upload is no longer open (or never had a row)."""
    candidates: dict[str, str] = {}
    async for stored in storage.list_objects(STAGING_PREFIX):
        if stored.modified_at < cutoff:
            candidates[stored.key] = stored.key.rsplit("/", 1)[-1]
        if len(candidates) >= EXPIRY_BATCH:
            break  # The next run takes the rest.
    if not candidates:
        return 0
    async with engine.connect() as conn:
        live = set((await conn.execute(_LIVE, {"ids": sorted(candidates.values())})).scalars())
    removed = 0
    for key, upload_id in candidates.items():
        if upload_id in live:
            continue
        await storage.delete(key)
        removed += 1
        logger.info("janitor removed staged leftover %s", key)
    return removed

"""Forget events older than `EVENTS_RETENTION_S`: a stream asking for them is told to reset."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, delete
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import utcnow
from upload_service.events.outbox import EVENTS

_PURGE = delete(EVENTS).where(EVENTS.c.created_at < bindparam("cutoff"))


async def purge_old_events(
    engine: AsyncEngine, *, retention_s: float, now: datetime | None = None
) -> int:
    """Delete the outbox's events older than `retention_s`; how many went."""
    cutoff = (now or utcnow()) - timedelta(seconds=retention_s)
    async with engine.begin() as conn:
        result = await conn.execute(_PURGE, {"cutoff": cutoff})
    return int(result.rowcount)

"""The `purge` job: delete a deleted document's object from storage."""

from __future__ import annotations

from upload_service.jobs.handler_context import Effects, HandlerContext, PermanentJobError
from upload_service.jobs.leases import ClaimedJob


async def purge(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Delete a deleted document's object from storage (deleting a missing object is fine)."""
    key = job.payload.get("storage_key")
    if not isinstance(key, str) or not key:
        raise PermanentJobError("The purge job names no storage key")
    await ctx.storage.delete(key)
    return None

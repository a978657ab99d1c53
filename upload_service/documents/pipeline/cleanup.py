"""Leave nothing behind: what a failed attempt stored is discarded, even while it is cancelled."""

from __future__ import annotations

import asyncio
import logging

from upload_service.storage.base import ObjectWriter, Storage

logger = logging.getLogger("upload_service.documents")


async def abort_write(writer: ObjectWriter) -> None:
    """Discard a write in progress; the abort runs to its end even if the caller is cancelled."""
    await asyncio.shield(writer.abort())


async def delete_quietly(storage: Storage, key: str) -> None:
    """Delete an object no row points to; a failure is logged and left to the janitor."""
    try:
        await storage.delete(key)
    except Exception:
        logger.exception("could not delete orphaned object %s", key)

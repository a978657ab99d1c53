"""Holding an upload's lease for as long as a request works on it, and letting it go after.

While a request streams a PATCH (or finishes an upload) its lease is renewed every few seconds,
so only a dead process's lease lapses (within `store.LEASE_S`). On the way out, whatever the
way (success, error, a client that left, a cancelled task), the lease is released at once so
the client's next request is served without waiting for it to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.db import uploads as store
from upload_service.errors import DatabaseUnavailable

logger = logging.getLogger("upload_service.tus")

RENEW_EVERY_S = store.LEASE_S / 3


def new_holder() -> str:
    """A name for one request's hold on a lease, unique across processes."""
    return secrets.token_hex(16)


@dataclass(slots=True)
class Held:
    """A lease `holder` holds inside `holding`; `released` once a statement of the block (the
    offset's move, the document's recording, an end state) let it go with its own change."""

    holder: str
    released: bool = False


async def _renew(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str, held: Held
) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        if held.released:
            return
        try:
            if not await store.renew_lease(sessions, upload_id, holder) and not held.released:
                # Lapsed and taken: the offset's compare-and-set refuses this request's bytes.
                logger.warning("upload %s: lease lost while writing", upload_id)
                return
        except DatabaseUnavailable:
            logger.warning("upload %s: could not renew the lease", upload_id)


@contextlib.asynccontextmanager
async def holding(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str
) -> AsyncIterator[Held]:
    """Keep the lease `holder` took renewed inside the block; release it after (unless a
    statement inside already did, saying so on the `Held` it was given)."""
    held = Held(holder)
    renewing = asyncio.ensure_future(_renew(sessions, upload_id, holder, held))
    try:
        yield held
    finally:
        renewing.cancel()
        with contextlib.suppress(BaseException):
            await renewing
        if not held.released:
            await _release(sessions, upload_id, holder)


async def _release(sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str) -> None:
    release = asyncio.ensure_future(store.release_lease(sessions, upload_id, holder))
    try:
        # Shielded: a request cancelled on its way out still lets the lease go.
        await asyncio.shield(release)
    except Exception:
        logger.warning("upload %s: lease not released, it lapses", upload_id, exc_info=True)

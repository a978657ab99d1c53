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

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.db import uploads as store
from upload_service.errors import DatabaseUnavailable

logger = logging.getLogger("upload_service.tus")

RENEW_EVERY_S = store.LEASE_S / 3


def new_holder() -> str:
    """A name for one request's hold on a lease, unique across processes."""
    return secrets.token_hex(16)


async def _renew(sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str) -> None:
    while True:
        await asyncio.sleep(RENEW_EVERY_S)
        try:
            if not await store.renew_lease(sessions, upload_id, holder):
                # Lapsed and taken: the offset's compare-and-set refuses this request's bytes.
                logger.warning("upload %s: lease lost while writing", upload_id)
                return
        except DatabaseUnavailable:
            logger.warning("upload %s: could not renew the lease", upload_id)


@contextlib.asynccontextmanager
async def holding(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str
) -> AsyncIterator[None]:
    """Keep the lease `holder` took renewed inside the block; release it after."""
    renewing = asyncio.ensure_future(_renew(sessions, upload_id, holder))
    try:
        yield
    finally:
        renewing.cancel()
        with contextlib.suppress(BaseException):
            await renewing
        release = asyncio.ensure_future(store.release_lease(sessions, upload_id, holder))
        try:
            # Shielded: a request cancelled on its way out still lets the lease go.
            await asyncio.shield(release)
        except Exception:
            logger.warning("upload %s: lease not released, it lapses", upload_id, exc_info=True)

"""The janitor's part in resumable uploads: expired ones leave nothing, live ones are spared.

An unfinished upload past its `expires_at` is taken over with a lease (so a PATCH that just
extended it, or is still writing, wins), marked `expiring` (it answers 410 from then on), its
partial object discarded (no partial file, no open S3 multipart upload), then marked `expired`.
An ended upload whose discard failed (or whose process died before it) stays `terminating` or
`expiring`, and each pass discards its bytes again until that succeeds. The keys of unfinished
uploads are handed to the rest of the janitor, which must not abort their multipart uploads or
delete their objects however old they look: a tus upload may take hours, and a `finishing` one
already has its object under its key before its document row commits. Rows of uploads that
ended (done, terminated, expired) are forgotten `ENDED_RETENTION` later.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.db import uploads
from upload_service.db.models import Upload
from upload_service.db.session import create_session_factory
from upload_service.jobs.queue import utc_now
from upload_service.storage.base import Storage

logger = logging.getLogger(__name__)

EXPIRE_BATCH = 200
# An ended upload answers 410 (or names its document) this long, then 404 like one never seen.
ENDED_RETENTION = timedelta(days=7)


async def expire_uploads(
    engine: AsyncEngine, storage: Storage, *, now: datetime | None = None
) -> int:
    """Expire unfinished uploads past their time and discard their bytes; count them."""
    sessions = create_session_factory(engine)
    now = now or utc_now()
    holder = f"janitor-{secrets.token_hex(8)}"
    expired = 0
    for upload_id in await uploads.expired_ids(sessions, now=now, limit=EXPIRE_BATCH):
        if not await uploads.take_lease(
            sessions, upload_id, holder, states=(uploads.OPEN,), expired_by=now
        ):
            continue  # A PATCH got there first.
        upload = await uploads.find(sessions, upload_id)
        if upload is None or not await uploads.begin_discard(
            sessions, upload_id, holder, uploads.EXPIRED
        ):
            continue
        if await _discard(sessions, storage, upload, holder):
            logger.info("upload %s expired: its bytes were removed", upload_id)
        expired += 1
    return expired


async def finish_discards(
    engine: AsyncEngine, storage: Storage, *, now: datetime | None = None
) -> int:
    """Discard again the bytes of ended uploads whose discard failed (or whose process died
    before it); count those now gone."""
    sessions = create_session_factory(engine)
    holder = f"janitor-{secrets.token_hex(8)}"
    done = 0
    for upload_id in await uploads.discarding_ids(
        sessions, now=now or utc_now(), limit=EXPIRE_BATCH
    ):
        if not await uploads.take_lease(
            sessions, upload_id, holder, states=uploads.DISCARDING_STATES
        ):
            continue  # Its own request is still discarding.
        upload = await uploads.find(sessions, upload_id)
        if upload is not None and await _discard(sessions, storage, upload, holder):
            logger.info("upload %s ended: its bytes were removed on a retry", upload_id)
            done += 1
    return done


async def _discard(
    sessions: async_sessionmaker[AsyncSession], storage: Storage, upload: Upload, holder: str
) -> bool:
    # The upload is terminating or expiring, leased to `holder`: once its bytes are gone it
    # takes its final state; a failure leaves it for the next pass.
    try:
        await storage.partial_objects.discard(upload.storage_key, upload.storage_state)
    except Exception:
        logger.warning("upload %s: could not discard its bytes yet", upload.id, exc_info=True)
        await uploads.release_lease(sessions, upload.id, holder)
        return False
    return await uploads.discarded(sessions, upload.id, holder)


async def live_upload_keys(engine: AsyncEngine) -> frozenset[str]:
    """The storage keys of unfinished uploads, which the janitor must leave alone."""
    return await uploads.live_keys(create_session_factory(engine))


async def purge_ended_uploads(engine: AsyncEngine, *, now: datetime | None = None) -> int:
    """Forget the rows of uploads that ended over `ENDED_RETENTION` ago; count them."""
    before = (now or utc_now()) - ENDED_RETENTION
    return await uploads.purge_ended(create_session_factory(engine), before=before)

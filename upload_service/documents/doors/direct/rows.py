"""The rows of direct uploads: found by id and owner only, and moved through their states.

States change with conditional UPDATEs, so two requests (or a request and the janitor) never
both act on one upload: `pending` → `completing` (one `complete` holds a lease) → `completed`
in the transaction that records the document, or → `rejected` / back to `pending`.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, or_, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.db.models import (
    DIRECT_COMPLETE_LEASE,
    DIRECT_UPLOAD_GRACE,
    DirectUpload,
    utcnow,
)
from upload_service.db.outage import database_required
from upload_service.documents.pipeline.recording import StageAlso
from upload_service.errors import DirectUploadGone, DirectUploadNotFound

Sessions = async_sessionmaker[AsyncSession]
GONE_STATES = frozenset({"rejected", "cancelled", "expired"})


async def insert(sessions: Sessions, upload: DirectUpload) -> None:
    """Record a declared upload."""
    async with database_required("declaring a direct upload"), sessions() as session:
        session.add(upload)
        await session.commit()


async def find_owned(sessions: Sessions, upload_id: str, owner: str) -> DirectUpload:
    """The caller's upload; another user's, or none, is 404 alike."""
    async with database_required("looking up a direct upload"), sessions() as session:
        upload = await session.get(DirectUpload, upload_id)
    if upload is None or upload.owner != owner:
        raise DirectUploadNotFound(upload_id)
    return upload


def lapsed(upload: DirectUpload, now: datetime | None = None) -> bool:
    """Whether the upload outlived its URLs and their grace: the janitor's now."""
    return (now or utcnow()) > upload.expires_at + DIRECT_UPLOAD_GRACE


def refuse_gone(upload: DirectUpload) -> None:
    """410 for an upload whose bytes are gone, or that lapsed (the janitor will remove it)."""
    if upload.state in GONE_STATES:
        raise DirectUploadGone(f"Upload {upload.id} is {upload.state}")
    if upload.state in ("pending", "completing") and lapsed(upload):
        raise DirectUploadGone(f"Upload {upload.id} expired")


async def extend(sessions: Sessions, upload: DirectUpload, until: datetime) -> None:
    """Move a pending upload's expiry to `until` (it is being worked on: new URLs were signed)."""
    async with database_required("extending a direct upload"), sessions() as session:
        await session.execute(
            update(DirectUpload)
            .where(DirectUpload.id == upload.id, DirectUpload.state == "pending")
            .values(expires_at=until)
        )
        await session.commit()


async def claim(sessions: Sessions, upload_id: str) -> bool:
    """Take the upload for one `complete`: pending, or held by one whose lease ran out."""
    now = utcnow()
    async with database_required("claiming a direct upload"), sessions() as session:
        result = await session.execute(
            update(DirectUpload)
            .where(
                DirectUpload.id == upload_id,
                or_(
                    DirectUpload.state == "pending",
                    and_(DirectUpload.state == "completing", DirectUpload.lease_until < now),
                ),
            )
            .values(state="completing", lease_until=now + DIRECT_COMPLETE_LEASE)
        )
        await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def settle(
    sessions: Sessions,
    upload_id: str,
    state: str,
    *,
    outcome: str | None = None,
    from_state: str = "completing",
) -> bool:
    """Move the upload from `from_state` to `state` (with why); False if it was not there."""
    async with database_required("settling a direct upload"), sessions() as session:
        result = await session.execute(
            update(DirectUpload)
            .where(DirectUpload.id == upload_id, DirectUpload.state == from_state)
            .values(state=state, outcome=outcome, lease_until=None)
        )
        await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


def mark_completed(upload_id: str) -> StageAlso:
    """The statement that ends the upload, staged in the transaction recording its document.

    Only from `completing`: an upload the janitor expired meanwhile (its lease ran out) rolls
    the whole recording back.
    """

    async def stage(session: AsyncSession) -> None:
        result = await session.execute(
            update(DirectUpload)
            .where(DirectUpload.id == upload_id, DirectUpload.state == "completing")
            .values(state="completed", outcome=None, lease_until=None)
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise DirectUploadGone(f"Upload {upload_id} expired while it was being completed")

    return stage

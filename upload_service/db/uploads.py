"""The `uploads` rows: each resumable upload's progress, its lease, and its end.

Every change that matters is a compare-and-set: a lease is taken only when free (or stale), the
offset moves only from the value the writer started at and only while it holds the lease, and
the end states are set by the lease holder. So two processes serving one upload can never both
write to it, and an offset is never moved past bytes that were not saved.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    Update,
    bindparam,
    case,
    delete,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.db.driver_statements import DriverStatement
from upload_service.db.models import Base, Upload, utcnow
from upload_service.db.outage import database_required
from upload_service.db.owner_locks import UPLOADS_SPACE, lock_owner
from upload_service.errors import TooManyOpenUploads

UPLOADS: Table = Base.metadata.tables["uploads"]
_c = UPLOADS.c

OPEN = "open"
FINISHING = "finishing"
DONE = "done"
TERMINATED = "terminated"
EXPIRED = "expired"
# Ended (they answer 410), but their bytes may still be in storage: whoever ends an upload
# holds it here until its discard succeeded, and the janitor discards again what a failure or
# a crash left, so an ended upload leaves nothing behind in the end.
TERMINATING = "terminating"
EXPIRING = "expiring"
DISCARDING_STATES = (TERMINATING, EXPIRING)
# Unfinished: the bytes and storage handles are still wanted.
LIVE_STATES = (OPEN, FINISHING)
ENDED_STATES = (DONE, TERMINATED, EXPIRED)
GONE_STATES = (TERMINATED, EXPIRED, *DISCARDING_STATES)

# A lease outlives a dead process by at most this long; a live one renews it well before.
LEASE_S = 10.0


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(_c.locked_by.is_(None), _c.locked_until < now)


async def create(sessions: async_sessionmaker[AsyncSession], upload: Upload, cap: int) -> None:
    """Insert a new upload unless its owner already holds `cap` unfinished ones (429).

    One owner's creations take turns, so a burst of them at `cap - 1` makes one upload, not
    many: on PostgreSQL under the owner's lock, taken before the count (a statement of its own,
    so it sees what the previous holder committed); on SQLite the insert, made first, takes the
    one write lock, which the other creations wait for before their own insert and count.
    """
    async with database_required("creating an upload"), sessions() as session:
        await lock_owner(await session.connection(), UPLOADS_SPACE, upload.owner)
        session.add(upload)
        await session.flush()
        held = await session.scalar(
            select(func.count())
            .select_from(UPLOADS)
            .where(
                _c.owner == upload.owner,
                _c.state.in_(LIVE_STATES),
                _c.expires_at > utcnow(),
            )
        )
        if (held or 0) > cap:  # This one included; leaving rolls it back.
            raise TooManyOpenUploads(cap)
        await session.commit()


async def find(sessions: async_sessionmaker[AsyncSession], upload_id: str) -> Upload | None:
    """The upload as it stands now (a snapshot, detached from its session)."""
    async with database_required("reading an upload"), sessions() as session:
        return await session.get(Upload, upload_id)


async def _changed(
    sessions: async_sessionmaker[AsyncSession],
    doing: str,
    *conditions: ColumnElement[bool],
    **values: object,
) -> bool:
    async with database_required(doing), sessions() as session:
        result = await session.execute(
            update(UPLOADS).where(*conditions).values(**values, updated_at=utcnow())
        )
        await session.commit()
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def take_lease(
    sessions: async_sessionmaker[AsyncSession],
    upload_id: str,
    holder: str,
    *,
    states: Sequence[str] = LIVE_STATES,
    offset: int | None = None,
    expired_by: datetime | None = None,
) -> bool:
    """Lease the upload to `holder` if no live lease is held (and it is at `offset`, or expired
    by `expired_by`, if given)."""
    now = utcnow()
    conditions = [_c.id == upload_id, _c.state.in_(states), _lease_free(now)]
    if offset is not None:
        conditions.append(_c.offset == offset)
    if expired_by is not None:
        conditions.append(_c.expires_at < expired_by)
    return await _changed(
        sessions,
        "leasing an upload",
        *conditions,
        locked_by=holder,
        locked_until=now + timedelta(seconds=LEASE_S),
    )


def _param(name: str, column: str) -> Any:
    # A named parameter of the column's type (the JSON state, the timestamps' processing).
    return bindparam(name, type_=_c[column].type)


# The two statements of every PATCH, built once and run on the driver's connection
# (`driver_statements`): through a session they cost several times the driver's own work.
_LEASE_TO_APPEND = DriverStatement(
    update(UPLOADS)
    .where(
        _c.id == _param("upload_id", "id"),
        _c.owner == _param("by_owner", "owner"),
        _c.state == OPEN,
        _c.offset == _param("at_offset", "offset"),
        _c.expires_at > _param("now", "expires_at"),
        or_(_c.locked_by.is_(None), _c.locked_until < _param("now", "locked_until")),
    )
    .values(
        locked_by=_param("holder", "locked_by"),
        locked_until=_param("until", "locked_until"),
        updated_at=_param("now", "updated_at"),
    )
    .returning(*UPLOADS.c)
)


def _advance_statement(*, finishing: bool) -> Update:
    lease: dict[str, object] = {} if finishing else {"locked_by": None, "locked_until": None}
    return (
        update(UPLOADS)
        .where(
            _c.id == _param("upload_id", "id"),
            _c.offset == _param("from_offset", "offset"),
            _c.locked_by == _param("holder", "locked_by"),
            _c.state == OPEN,
        )
        .values(
            offset=_param("to_offset", "offset"),
            storage_state=_param("saved_state", "storage_state"),
            expires_at=_param("expires", "expires_at"),
            updated_at=_param("now", "updated_at"),
            state=FINISHING if finishing else OPEN,
            **lease,
        )
        .returning(_c.id)  # A row back: the compare-and-set held.
    )


_ADVANCE_OPEN = DriverStatement(_advance_statement(finishing=False))
_ADVANCE_FINISHING = DriverStatement(_advance_statement(finishing=True))


async def lease_to_append(
    engine: AsyncEngine,
    upload_id: str,
    owner: str,
    holder: str,
    *,
    offset: int,
) -> Upload | None:
    """The owner's open, unexpired upload at `offset`, leased to `holder` in one statement;
    None when any of that is not so (the caller looks again to say which)."""
    now = utcnow()
    async with database_required("leasing an upload"):
        rows = await _LEASE_TO_APPEND.rows(
            engine,
            {
                "upload_id": upload_id,
                "by_owner": owner,
                "at_offset": offset,
                "now": now,
                "holder": holder,
                "until": now + timedelta(seconds=LEASE_S),
            },
        )
    if not rows:
        return None
    values = rows[0]
    values["upload_metadata"] = values.pop("metadata")
    return Upload(**values)


async def renew_lease(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str
) -> bool:
    """Push the holder's lease out again; False when it was lost (it had lapsed and was taken)."""
    return await _changed(
        sessions,
        "renewing an upload's lease",
        _c.id == upload_id,
        _c.locked_by == holder,
        locked_until=utcnow() + timedelta(seconds=LEASE_S),
    )


async def release_lease(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str
) -> None:
    """Let the next request in at once (a lease not held any more is left alone)."""
    await _changed(
        sessions,
        "releasing an upload's lease",
        _c.id == upload_id,
        _c.locked_by == holder,
        locked_by=None,
        locked_until=None,
    )


async def advance(
    engine: AsyncEngine,
    upload: Upload,
    holder: str,
    *,
    offset: int,
    storage_state: dict[str, Any],
    expires_at: datetime,
) -> bool:
    """Move the offset over bytes just saved; the upload is `finishing` once all are in.

    An upload that stays open is let go in the same statement (the PATCH is over); a finishing
    one stays leased to `holder`, who goes on to record it.
    """
    statement = _ADVANCE_FINISHING if offset == upload.length else _ADVANCE_OPEN
    async with database_required("moving an upload's offset"):
        rows = await statement.rows(
            engine,
            {
                "upload_id": upload.id,
                "from_offset": upload.offset,
                "holder": holder,
                "to_offset": offset,
                "saved_state": storage_state,
                "expires": expires_at,
                "now": utcnow(),
            },
        )
    return bool(rows)


async def end(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str, state: str
) -> bool:
    """Set a final state (terminated, expired) as the lease holder, and let the lease go."""
    return await _changed(
        sessions,
        f"marking an upload {state}",
        _c.id == upload_id,
        _c.locked_by == holder,
        _c.state.in_(LIVE_STATES),
        state=state,
        locked_by=None,
        locked_until=None,
    )


async def begin_discard(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str, state: str
) -> bool:
    """End the upload as the lease holder, bound for `state` (terminated, expired): it is
    `terminating` or `expiring` until `discarded`, and the holder keeps the lease to discard."""
    return await _changed(
        sessions,
        f"marking an upload {state}",
        _c.id == upload_id,
        _c.locked_by == holder,
        _c.state.in_(LIVE_STATES),
        state=TERMINATING if state == TERMINATED else EXPIRING,
    )


async def discarded(
    sessions: async_sessionmaker[AsyncSession], upload_id: str, holder: str
) -> bool:
    """The ended upload's bytes are gone: `terminated` or `expired` now, the lease let go."""
    return await _changed(
        sessions,
        "marking an upload's bytes discarded",
        _c.id == upload_id,
        _c.locked_by == holder,
        _c.state.in_(DISCARDING_STATES),
        state=case((_c.state == TERMINATING, TERMINATED), else_=EXPIRED),
        locked_by=None,
        locked_until=None,
    )


async def discarding_ids(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int
) -> list[str]:
    """Ended uploads whose bytes may remain and whose lease is free: the janitor's to discard
    again (their discard failed, or their process died before it)."""
    async with database_required("finding uploads to discard"), sessions() as session:
        rows = await session.scalars(
            select(_c.id)
            .where(_c.state.in_(DISCARDING_STATES), _lease_free(now))
            .order_by(_c.updated_at)
            .limit(limit)
        )
        return list(rows)


async def mark_done(session: AsyncSession, upload_id: str, holder: str) -> bool:
    """In the caller's transaction (the document's): the upload is done, its lease let go."""
    result = await session.execute(
        update(UPLOADS)
        .where(_c.id == upload_id, _c.locked_by == holder, _c.state == FINISHING)
        .values(state=DONE, locked_by=None, locked_until=None, updated_at=utcnow())
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def expired_ids(
    sessions: async_sessionmaker[AsyncSession], *, now: datetime, limit: int
) -> list[str]:
    """Unfinished uploads past their expiry whose lease is free: the janitor's to remove."""
    async with database_required("finding expired uploads"), sessions() as session:
        rows = await session.scalars(
            select(_c.id)
            .where(_c.state == OPEN, _c.expires_at < now, _lease_free(now))
            .order_by(_c.expires_at)
            .limit(limit)
        )
        return list(rows)


async def purge_ended(sessions: async_sessionmaker[AsyncSession], *, before: datetime) -> int:
    """Forget uploads that ended (done, terminated, expired) before `before`: they answer 404."""
    async with database_required("purging ended uploads"), sessions() as session:
        result = await session.execute(
            delete(UPLOADS).where(_c.state.in_(ENDED_STATES), _c.updated_at < before)
        )
        await session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


async def live_keys(sessions: async_sessionmaker[AsyncSession]) -> frozenset[str]:
    """The storage keys of unfinished uploads: their objects and writes must stay."""
    async with database_required("listing live uploads"), sessions() as session:
        rows = await session.scalars(select(_c.storage_key).where(_c.state.in_(LIVE_STATES)))
        return frozenset(rows)

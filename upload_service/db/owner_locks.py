"""Per-owner locks held for one transaction: a user's writes that must not interleave.

On PostgreSQL a transaction-scoped advisory lock (`pg_advisory_xact_lock`): it is released by
the commit or rollback, so it works through PgBouncer in transaction mode, where a session lock
could stay behind on a server connection another client gets next. SQLite has one writer at a
time already, so it takes nothing here. A statement's snapshot is taken when it starts, before
it waits for a lock: what must see the previous holder's commit runs as a statement of its own
after `lock_owner`.
"""

from __future__ import annotations

import hashlib

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

# The first keys of the two-key advisory locks, one space per kind of write, so one kind never
# waits on another's holder (opening a stream never waits on that owner's event writes).
EVENTS_SPACE = 0x0E17
STREAMS_SPACE = 0x0E18
UPLOADS_SPACE = 0x0E19

_LOCK = text("SELECT pg_advisory_xact_lock(:space, :key)")


def owner_key(owner: str) -> int:
    """A stable 32-bit key for `owner`: its lock's second key (and its events' wake-up)."""
    return int.from_bytes(
        hashlib.blake2b(owner.encode(), digest_size=4).digest(), "big", signed=True
    )


async def lock_owner(conn: AsyncConnection, space: int, owner: str) -> None:
    """Hold `owner`'s lock in `space` until `conn`'s transaction ends (PostgreSQL only)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(_LOCK, {"space": space, "key": owner_key(owner)})

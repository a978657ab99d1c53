"""Each user's open event streams, counted against `EVENTS_MAX_STREAMS` wherever they are held.

SQLite means one process, so a count in memory is the whole truth. On PostgreSQL the streams
of one user may sit on any process of any replica: each open stream is a row of
`event_stream_leases` (its owner, its process, its expiry). Opening one takes the owner's
transaction-scoped advisory lock (it works through PgBouncer in transaction mode; a session
lock would not), then counts the owner's unexpired rows and inserts one only below the cap, so
two processes opening at once cannot both take the last slot. Closing deletes the row. Each
process renews all its rows with one statement every `lease_s / 3`, and issues none while it
holds no stream; a SIGKILLed process's rows expire after `lease_s`, so its users are never
locked out for longer. On shutdown the process drops its rows with one statement rather than
one per stream.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections import defaultdict
from collections.abc import Coroutine
from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

from sqlalchemy import Interval, String, Table, any_, bindparam, delete, func, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncEngine
from ulid import ULID

from upload_service.db.models import Base
from upload_service.db.outage import database_required
from upload_service.db.owner_locks import STREAMS_SPACE, lock_owner
from upload_service.errors import TooManyStreams

logger = logging.getLogger(__name__)

LEASES: Table = Base.metadata.tables["event_stream_leases"]
_l = LEASES.c
# Renewed three times per lease: a live process keeps its rows through two missed renewals
# (a database blip), and a dead one's expire within one lease.
RENEWALS_PER_LEASE = 3
_CLOSE_TIMEOUT_S = 2.0

_IDS = ARRAY(String(40))
# In a statement of its own after the lock, so its snapshot sees every row committed by whoever
# held the lock before (a statement's snapshot is taken when it starts, before any lock wait).
# The owner's expired rows (of a killed process) go on the way.
_TAKE = text(
    """
    WITH gone AS (
        DELETE FROM event_stream_leases WHERE owner = :owner AND expires_at <= now()
    ), held AS (
        SELECT count(*) AS n FROM event_stream_leases
        WHERE owner = :owner AND expires_at > now()
    )
    INSERT INTO event_stream_leases (id, owner, holder, expires_at)
    SELECT :id, :owner, :holder, now() + CAST(:lease AS interval)
    FROM held WHERE held.n < :cap
    RETURNING id
    """
)
# Only the rows this process knows it holds: a row it failed to delete (a database blip as a
# stream ended, a cancelled open) is not renewed, so it expires instead of living for ever.
_RENEW = (
    update(LEASES)
    .where(_l.holder == bindparam("of_holder"), _l.id == any_(bindparam("ids", type_=_IDS)))
    .values(expires_at=func.now() + bindparam("lease", type_=Interval()))
)
_GIVE_BACK = delete(LEASES).where(_l.id == bindparam("id"))
_GIVE_BACK_ALL = delete(LEASES).where(_l.holder == bindparam("holder"))
_PURGE = delete(LEASES).where(_l.expires_at <= func.now())


@dataclass(frozen=True, slots=True)
class StreamSlot:
    """One open stream's place in its owner's count."""

    id: str
    owner: str


class StreamSlots(Protocol):
    """Where an owner's open streams are counted against the cap."""

    async def take(self, owner: str) -> StreamSlot:
        """A slot for one more stream of `owner`; `TooManyStreams` at the cap."""
        ...

    async def give_back(self, slot: StreamSlot) -> None:
        """The stream of `slot` ended (once per slot)."""
        ...

    def drain(self) -> None:
        """The process is shutting down: streams ending now are given back by `aclose`."""
        ...

    async def aclose(self) -> None:
        """Give back every slot still held, and stop renewing."""
        ...


class LocalStreamSlots:
    """SQLite, one process: the count is in memory."""

    def __init__(self, cap: int) -> None:
        self._cap = cap
        self._per_owner: dict[str, set[str]] = defaultdict(set)

    async def take(self, owner: str) -> StreamSlot:
        held = self._per_owner[owner]
        if len(held) >= self._cap:
            raise TooManyStreams(self._cap)
        slot = StreamSlot(str(ULID()), owner)
        held.add(slot.id)
        return slot

    async def give_back(self, slot: StreamSlot) -> None:
        held = self._per_owner.get(slot.owner)
        if held is None:
            return
        held.discard(slot.id)
        if not held:
            del self._per_owner[slot.owner]

    def drain(self) -> None:
        pass

    async def aclose(self) -> None:
        self._per_owner.clear()


def process_holder_id() -> str:
    """This process's name on its leases: host and pid, and a random part, since a pid is
    reused after a restart (and two apps may share one process in tests)."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


class PgStreamSlots:
    """PostgreSQL: a lease row per open stream, counted across every process (module doc)."""

    def __init__(
        self, engine: AsyncEngine, cap: int, *, lease_s: float, pooler: bool = False
    ) -> None:
        self._cap = cap
        self._lease_s = lease_s
        self._lease = timedelta(seconds=lease_s)
        self._engine = engine
        # One statement needs no transaction; behind a transaction pooler it does, or the
        # prepare and the execute may reach different server connections (see db/reads.py).
        self._one_statement = (
            engine if pooler else engine.execution_options(isolation_level="AUTOCOMMIT")
        )
        self.holder = process_holder_id()
        self._held: set[str] = set()
        self._draining = False
        self._renewing: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[None]] = set()

    @property
    def held(self) -> int:
        """Slots this process holds."""
        return len(self._held)

    async def take(self, owner: str) -> StreamSlot:
        slot = StreamSlot(str(ULID()), owner)
        params = {
            "id": slot.id,
            "owner": owner,
            "holder": self.holder,
            "lease": self._lease,
            "cap": self._cap,
        }
        try:
            async with (
                database_required("opening an event stream"),
                self._engine.begin() as conn,
            ):
                await lock_owner(conn, STREAMS_SPACE, owner)
                taken = (await conn.execute(_TAKE, params)).first()
        except BaseException:
            # Cancelled or cut off while committing, the row may exist: delete it now rather
            # than let it count until it expires.
            self._later(self._delete(slot.id))
            raise
        if taken is None:
            raise TooManyStreams(self._cap)
        self._held.add(slot.id)
        if self._renewing is None and not self._draining:
            # Started with the first stream: a process that never holds one (a worker, an
            # idle web process) never renews, so it issues no statement for this.
            self._renewing = asyncio.create_task(self._renew_forever(), name="stream-leases")
        return slot

    async def give_back(self, slot: StreamSlot) -> None:
        if slot.id not in self._held:
            return
        self._held.discard(slot.id)
        if not self._draining:  # Else `aclose` drops them all with one statement.
            await self._delete(slot.id)

    async def _delete(self, slot_id: str) -> None:
        try:
            async with self._one_statement.begin() as conn:
                await conn.execute(_GIVE_BACK, {"id": slot_id})
        except Exception as exc:
            # The row expires by itself within a lease: the slot comes back a little later.
            logger.warning("could not release a stream's lease (%s)", type(exc).__name__)

    def _later(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        # Held until done: the loop keeps only weak references to tasks.
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def drain(self) -> None:
        self._draining = True

    async def aclose(self) -> None:
        if self._background:
            await asyncio.wait(self._background, timeout=5)
        if self._renewing is not None:
            self._renewing.cancel()
            with suppress(asyncio.CancelledError):
                await self._renewing
            self._renewing = None
            try:
                # Bounded: a database that is down must not hold up the shutdown; the rows
                # then expire by themselves.
                async with asyncio.timeout(_CLOSE_TIMEOUT_S), self._one_statement.begin() as conn:
                    await conn.execute(_GIVE_BACK_ALL, {"holder": self.holder})
            except Exception as exc:
                logger.warning("could not release the streams' leases (%s)", type(exc).__name__)
        self._held.clear()

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self._lease_s / RENEWALS_PER_LEASE)
            if not self._held:
                continue
            try:
                await self.renew()
            except Exception as exc:
                logger.warning("could not renew the streams' leases (%s)", type(exc).__name__)

    async def renew(self) -> int:
        """Extend every lease this process holds by one lease, in one statement; how many."""
        async with self._one_statement.begin() as conn:
            result = await conn.execute(
                _RENEW, {"of_holder": self.holder, "ids": list(self._held), "lease": self._lease}
            )
        renewed = int(result.rowcount)
        if renewed < len(self._held):
            # Rows expired while this process could not renew (stalled, or cut off): those
            # streams go on uncounted until they end.
            logger.warning("%d stream lease(s) had expired", len(self._held) - renewed)
        return renewed


def create_stream_slots(
    engine: AsyncEngine, cap: int, *, lease_s: float, pooler: bool = False
) -> StreamSlots:
    """Leases in the database on PostgreSQL (many processes); a count in memory on SQLite."""
    if engine.dialect.name == "postgresql":
        return PgStreamSlots(engine, cap, lease_s=lease_s, pooler=pooler)
    return LocalStreamSlots(cap)


async def purge_expired_leases(engine: AsyncEngine) -> int:
    """Delete leases past their expiry (of processes that died holding streams); how many.

    Expired rows no longer count; this only keeps the table as small as the open streams.
    """
    async with engine.begin() as conn:
        result = await conn.execute(_PURGE)
    return int(result.rowcount)

"""The per-user cap on open event streams holds across processes: each engine here stands for a
process (its own pool, its own holder id) on the one PostgreSQL, through PgBouncer in that run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import EventStreamLease
from upload_service.db.session import create_engine
from upload_service.errors import TooManyStreams
from upload_service.events.stream_slots import PgStreamSlots, StreamSlot, purge_expired_leases

CAP = 3
MakeSlots = Callable[..., Awaitable[PgStreamSlots]]
ENGINE_OF: dict[int, AsyncEngine] = {}


@pytest.fixture
async def make_slots(
    pg_url: str, pg_pooler: bool, pg_clean: AsyncEngine
) -> AsyncIterator[MakeSlots]:
    """Slots on an engine of their own, as a separate process would have; closed at the end."""
    opened: list[tuple[PgStreamSlots, AsyncEngine]] = []

    async def make(cap: int = CAP, lease_s: float = 30.0) -> PgStreamSlots:
        engine = create_engine(pg_url, pool_size=4, pooler=pg_pooler)
        slots = PgStreamSlots(engine, cap, lease_s=lease_s, pooler=pg_pooler)
        opened.append((slots, engine))
        ENGINE_OF[id(slots)] = engine
        return slots

    yield make
    for slots, engine in opened:
        await slots.aclose()
        await engine.dispose()
        del ENGINE_OF[id(slots)]


async def leases_of(engine: AsyncEngine, owner: str) -> int:
    async with engine.connect() as conn:
        query = select(func.count()).where(EventStreamLease.owner == owner)
        return int(await conn.scalar(query) or 0)


async def take_all(slots: PgStreamSlots, owner: str, count: int) -> list[StreamSlot]:
    return [await slots.take(owner) for _ in range(count)]


async def test_the_cap_counts_streams_of_every_process_and_only_the_owners(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    one, two = await make_slots(), await make_slots()
    await take_all(one, "alice", CAP - 1)
    await two.take("alice")
    with pytest.raises(TooManyStreams):
        await one.take("alice")
    with pytest.raises(TooManyStreams):
        await two.take("alice")
    # Another user's streams are counted apart.
    await take_all(two, "bob", CAP)
    assert await leases_of(pg_clean, "alice") == CAP
    assert await leases_of(pg_clean, "bob") == CAP


async def test_opening_at_once_from_two_processes_never_passes_the_cap(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    one, two = await make_slots(), await make_slots()
    attempts = [slots.take("alice") for _ in range(6) for slots in (one, two)]
    outcomes = await asyncio.gather(*attempts, return_exceptions=True)
    taken = [o for o in outcomes if isinstance(o, StreamSlot)]
    refused = [o for o in outcomes if isinstance(o, TooManyStreams)]
    assert (len(taken), len(refused)) == (CAP, len(attempts) - CAP), outcomes
    assert await leases_of(pg_clean, "alice") == CAP


async def test_a_closed_stream_frees_its_slot_for_any_process(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    one, two = await make_slots(), await make_slots()
    held = await take_all(one, "alice", CAP)
    with pytest.raises(TooManyStreams):
        await two.take("alice")
    await one.give_back(held[0])
    await one.give_back(held[0])  # Once per slot: a second give-back frees nothing more.
    await two.take("alice")
    with pytest.raises(TooManyStreams):
        await two.take("alice")
    assert await leases_of(pg_clean, "alice") == CAP


async def test_the_leases_of_a_killed_process_stop_counting_once_expired(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    survivor = await make_slots()
    # A process SIGKILLed while holding two streams left its rows behind, still unexpired...
    async with pg_clean.begin() as conn:
        for n in range(CAP):
            await conn.execute(
                text(
                    "INSERT INTO event_stream_leases (id, owner, holder, expires_at) "
                    "VALUES (:id, 'alice', 'killed:1:00', now() + interval '30 seconds')"
                ),
                {"id": f"lease_{n}"},
            )
    with pytest.raises(TooManyStreams):
        await survivor.take("alice")
    # ... until they expire: then they count for nothing, and go when the owner opens again.
    async with pg_clean.begin() as conn:
        await conn.execute(
            text("UPDATE event_stream_leases SET expires_at = now() - interval '1 second'")
        )
    await take_all(survivor, "alice", CAP)
    query = select(EventStreamLease.holder).where(EventStreamLease.owner == "alice")
    async with pg_clean.connect() as conn:
        holders = set(await conn.scalars(query))
    assert holders == {survivor.holder}


async def test_the_janitor_removes_expired_leases_only(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    slots = await make_slots()
    await take_all(slots, "alice", 2)
    await slots.take("bob")
    async with pg_clean.begin() as conn:
        await conn.execute(
            text(
                "UPDATE event_stream_leases SET expires_at = now() - interval '1 second' "
                "WHERE owner = 'alice'"
            )
        )
    assert await purge_expired_leases(pg_clean) == 2
    assert (await leases_of(pg_clean, "alice"), await leases_of(pg_clean, "bob")) == (0, 1)


def count_statements(engine: AsyncEngine, into: list[str]) -> Callable[[], None]:
    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        into.append(statement.split()[0].upper())

    event.listen(engine.sync_engine, "before_cursor_execute", seen)
    return lambda: event.remove(engine.sync_engine, "before_cursor_execute", seen)


async def test_a_process_renews_all_its_leases_in_one_statement_and_idle_issues_none(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    lease_s = 0.9
    holding, other = await make_slots(lease_s=lease_s), await make_slots()
    statements: list[str] = []
    stop_counting = count_statements(ENGINE_OF[id(holding)], statements)
    try:
        # Idle, it issues nothing, not even renewals.
        await asyncio.sleep(lease_s)
        assert statements == []
        held = await take_all(holding, "alice", CAP)
        # A row of this process that no stream holds (its delete failed as the stream ended).
        async with pg_clean.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO event_stream_leases (id, owner, holder, expires_at) "
                    "VALUES ('orphan', 'bob', :holder, now() + interval '1 second')"
                ),
                {"holder": holding.holder},
            )
        statements.clear()
        # Kept alive well past one lease by its renewals: the other process is still refused.
        await asyncio.sleep(lease_s * 2.5)
        with pytest.raises(TooManyStreams):
            await other.take("alice")
        # The orphan was not renewed: it no longer counts.
        await take_all(other, "bob", CAP)
        renewals = [s for s in statements if s == "UPDATE"]
        # Every lease_s / 3, one statement for all three streams.
        assert 4 <= len(renewals) <= 9, statements
        assert set(statements) <= {"UPDATE", "BEGIN", "COMMIT"}, statements
        for slot in held:
            await holding.give_back(slot)
        statements.clear()
        await asyncio.sleep(lease_s)
        assert statements == []  # Holding nothing again: no statement.
    finally:
        stop_counting()


async def test_shutdown_gives_back_every_slot_with_one_statement(
    make_slots: MakeSlots, pg_clean: AsyncEngine
) -> None:
    slots, other = await make_slots(), await make_slots()
    held = await take_all(slots, "alice", CAP)
    statements: list[str] = []
    stop_counting = count_statements(ENGINE_OF[id(slots)], statements)
    try:
        slots.drain()
        for slot in held:  # The streams end as the process shuts down...
            await slots.give_back(slot)
        await slots.aclose()  # ... and their leases go at once.
    finally:
        stop_counting()
    assert [s for s in statements if s == "DELETE"] == ["DELETE"]
    assert await leases_of(pg_clean, "alice") == 0
    await take_all(other, "alice", CAP)

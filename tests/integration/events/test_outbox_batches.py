"""One outbox write per transaction: a batch's events and job wake-ups are held back and written
in one statement at its end, still under the owners' locks, so ids stay visible in order."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from upload_service.db.migrate import upgrade_to_head
from upload_service.db.models import DocumentEvent
from upload_service.db.session import create_engine
from upload_service.events.outbox import (
    EVENTS_CHANNEL,
    JOBS_CHANNEL,
    DocumentChange,
    one_outbox_write,
    owner_key,
    record_events,
    wake_workers,
)
from upload_service.events.wakeups import LocalWakeups, PgWakeups


async def doc_ids_of(engine: AsyncEngine, owner: str) -> list[str]:
    async with engine.connect() as conn:
        query = select(DocumentEvent.doc_id).where(DocumentEvent.owner == owner)
        return list((await conn.execute(query.order_by(DocumentEvent.id))).scalars())


class StatementLog:
    """The statements an engine sends, as SQLAlchemy hands them to the driver."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements: list[str] = []
        event.listen(engine.sync_engine, "before_cursor_execute", self._seen)
        self._engine = engine

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements.append(statement)

    def close(self) -> None:
        event.remove(self._engine.sync_engine, "before_cursor_execute", self._seen)


async def test_a_batch_writes_its_events_and_wakeups_at_its_end_in_one_statement(
    pg_clean: AsyncEngine, pg_direct_url: str
) -> None:
    wakeups = PgWakeups(pg_direct_url, (EVENTS_CHANNEL, JOBS_CHANNEL))
    woken: list[tuple[str, str]] = []
    wakeups.listen(EVENTS_CHANNEL, lambda payload: woken.append((EVENTS_CHANNEL, payload)))
    wakeups.listen(JOBS_CHANNEL, lambda payload: woken.append((JOBS_CHANNEL, payload)))
    await wakeups.start()
    await asyncio.wait_for(wakeups.connected.wait(), 10)
    log = StatementLog(pg_clean)
    try:
        async with pg_clean.begin() as conn:
            async with one_outbox_write(conn):
                await record_events(conn, [DocumentChange.deleted("alice", "doc_1")])
                await wake_workers(conn)
                bob, alice = (
                    DocumentChange.deleted("bob", "doc_2"),
                    DocumentChange.deleted("alice", "doc_3"),
                )
                await record_events(conn, [bob, alice])
                # Held back: nothing written yet, not even in this transaction.
                assert log.statements == []
                assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 0
                before_end = len(log.statements)
            assert len(log.statements) == before_end + 1
            assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 3
            await asyncio.sleep(0.2)
            assert woken == []  # Wake-ups go out with the commit, not before.
        async with asyncio.timeout(5):
            while len(woken) < 3:
                await asyncio.sleep(0.02)
    finally:
        log.close()
        await wakeups.aclose()
    assert await doc_ids_of(pg_clean, "alice") == ["doc_1", "doc_3"]
    assert await doc_ids_of(pg_clean, "bob") == ["doc_2"]
    assert sorted(woken) == sorted(
        [
            (EVENTS_CHANNEL, str(owner_key("alice"))),
            (EVENTS_CHANNEL, str(owner_key("bob"))),
            (JOBS_CHANNEL, ""),
        ]
    )


async def _failing_batch(conn: AsyncConnection) -> None:
    async with one_outbox_write(conn):
        await record_events(conn, [DocumentChange.deleted("alice", "doc_lost")])
        raise RuntimeError("effect failed")


async def test_a_batch_that_raises_writes_nothing_and_the_connection_writes_at_once_again(
    pg_clean: AsyncEngine,
) -> None:
    async with pg_clean.connect() as conn:
        await conn.begin()
        with pytest.raises(RuntimeError, match="effect failed"):
            await _failing_batch(conn)
        assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 0
        # The block is over: the next change is written where it is recorded.
        await record_events(conn, [DocumentChange.deleted("alice", "doc_kept")])
        assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 1
        await conn.commit()
    assert await doc_ids_of(pg_clean, "alice") == ["doc_kept"]


async def test_an_open_batch_holds_the_next_writer_of_its_owner_until_it_commits(
    pg_clean: AsyncEngine,
) -> None:
    first = await pg_clean.connect()
    await first.begin()
    try:
        async with one_outbox_write(first):
            await record_events(first, [DocumentChange.deleted("alice", "doc_first")])

        async def record(owner: str, doc_id: str) -> None:
            async with pg_clean.begin() as conn, one_outbox_write(conn):
                await record_events(conn, [DocumentChange.deleted(owner, doc_id)])

        second = asyncio.create_task(record("alice", "doc_second"))
        await asyncio.wait_for(record("bob", "doc_of_bob"), 5)
        await asyncio.sleep(0.3)
        assert not second.done()
        await first.commit()
        await asyncio.wait_for(second, 5)
    finally:
        await first.close()
    assert await doc_ids_of(pg_clean, "alice") == ["doc_first", "doc_second"]


async def test_a_reader_resuming_from_the_last_id_misses_nothing_while_batches_of_one_owner_race(
    pg_clean: AsyncEngine,
) -> None:
    """As a stream reads: after the last id it has seen. A batch committing after a larger id
    became visible would be skipped for good; the owner's lock must make that impossible."""
    writers, batches = 4, 12
    rng = random.Random(7)

    async def write(writer: int) -> None:
        for batch in range(batches):
            async with pg_clean.begin() as conn:
                async with one_outbox_write(conn):
                    await record_events(
                        conn,
                        [
                            DocumentChange.deleted("alice", f"doc_{writer}_{batch}_{n}")
                            for n in range(rng.randint(1, 3))
                        ],
                    )
                # Between the ids' draw and the commit: where another writer could overtake.
                await asyncio.sleep(rng.uniform(0, 0.01))

    seen: list[int] = []
    done = asyncio.Event()

    async def read() -> None:
        last = 0
        async with pg_clean.connect() as conn:
            while True:
                finished = done.is_set()
                rows = await conn.execute(
                    select(DocumentEvent.id)
                    .where(DocumentEvent.owner == "alice", DocumentEvent.id > last)
                    .order_by(DocumentEvent.id)
                )
                await conn.rollback()  # A fresh snapshot for the next read.
                fresh = list(rows.scalars())
                seen.extend(fresh)
                last = fresh[-1] if fresh else last
                if finished:
                    return
                await asyncio.sleep(0.002)

    reader = asyncio.create_task(read())
    async with asyncio.timeout(60):
        await asyncio.gather(*(write(n) for n in range(writers)))
        done.set()
        await reader
    async with pg_clean.connect() as conn:
        every = list(
            (
                await conn.execute(
                    select(DocumentEvent.id)
                    .where(DocumentEvent.owner == "alice")
                    .order_by(DocumentEvent.id)
                )
            ).scalars()
        )
    assert len(every) >= writers * batches
    assert seen == every


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'batches.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


async def test_on_sqlite_a_batch_writes_at_its_end_and_wakes_in_memory_at_commit(
    sqlite_engine: AsyncEngine,
) -> None:
    wakeups = LocalWakeups(sqlite_engine)
    await wakeups.start()
    woken: list[tuple[str, str]] = []
    wakeups.listen(EVENTS_CHANNEL, lambda payload: woken.append((EVENTS_CHANNEL, payload)))
    wakeups.listen(JOBS_CHANNEL, lambda payload: woken.append((JOBS_CHANNEL, payload)))
    try:
        async with sqlite_engine.begin() as conn:
            async with one_outbox_write(conn):
                await record_events(conn, [DocumentChange.deleted("alice", "doc_1")])
                await wake_workers(conn)
                assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 0
            assert await conn.scalar(text("SELECT count(*) FROM document_events")) == 1
            assert woken == []
        assert sorted(woken) == [(EVENTS_CHANNEL, str(owner_key("alice"))), (JOBS_CHANNEL, "")]
    finally:
        await wakeups.aclose()
    assert await doc_ids_of(sqlite_engine, "alice") == ["doc_1"]

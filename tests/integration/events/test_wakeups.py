"""Wake-ups: a worker is woken by NOTIFY (not by its slow poll), a stream by its owner's commit
from another connection, a lost listening connection comes back and nothing is missed, and on
SQLite the same happens in memory, at commit and never on rollback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    FixedClassifier,
    get_document,
    running_worker,
    store_document,
    wait_for,
)
from upload_service.db.migrate import upgrade_to_head
from upload_service.db.reads import open_reader
from upload_service.db.session import create_engine, create_session_factory
from upload_service.events.hub import StreamHub
from upload_service.events.outbox import (
    EVENTS_CHANNEL,
    JOBS_CHANNEL,
    DocumentChange,
    record_events,
)
from upload_service.events.stream import Start, event_stream
from upload_service.events.stream_slots import LocalStreamSlots
from upload_service.events.wakeups import LocalWakeups, PgWakeups, Wakeups
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def pg_wakeups(pg_direct_url: str, pg_clean: AsyncEngine) -> AsyncIterator[PgWakeups]:
    # LISTEN needs a session of its own: the server itself, never through a pooler.
    wakeups = PgWakeups(pg_direct_url, (EVENTS_CHANNEL, JOBS_CHANNEL))
    await wakeups.start()
    await asyncio.wait_for(wakeups.connected.wait(), 10)
    yield wakeups
    await wakeups.aclose()


async def deleted_event(engine: AsyncEngine, owner: str, doc_id: str) -> None:
    async with engine.begin() as conn:
        await record_events(conn, [DocumentChange.deleted(owner, doc_id)])


async def test_an_idle_worker_is_woken_by_notify_not_by_its_poll(
    pg_sessions: Sessions, pg_wakeups: PgWakeups, make_settings: MakeSettings, tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(janitor_interval_s=0)
    async with running_worker(
        pg_sessions, storage, FixedClassifier(), settings, wakeups=pg_wakeups, fallback_poll_s=60
    ):
        await asyncio.sleep(0.5)  # Idle now: its next poll is 30 s or more away.
        started = time.monotonic()
        stored = await store_document(pg_sessions, storage, b"%PDF-1.4 invoice")
        await wait_for(
            lambda: get_document(pg_sessions, stored.doc_id),
            lambda document: document.status == "complete",
            timeout_s=5,
        )
    assert time.monotonic() - started < 2.0


async def collect(frames: AsyncIterator[bytes], into: list[bytes]) -> None:
    async for chunk in frames:
        into.append(chunk)


async def test_a_lost_listening_connection_comes_back_and_the_stream_misses_nothing(
    pg_url: str, pg_pooler: bool, pg_clean: AsyncEngine, pg_wakeups: PgWakeups
) -> None:
    hub = StreamHub(pg_wakeups, LocalStreamSlots(5))
    reader = await open_reader(pg_url, pool_size=2, pooler=pg_pooler)
    subscription = await hub.subscribe("alice")
    frames: list[bytes] = []
    streaming = asyncio.create_task(
        collect(
            event_stream(
                reader, subscription, Start(0, False), heartbeat_s=15, closing=hub.closing
            ),
            frames,
        )
    )
    try:
        await deleted_event(pg_clean, "alice", "doc_before")
        await wait_for(lambda: _joined(frames), lambda got: "doc_before" in got, timeout_s=5)

        # Cut the listening connection from the server's side; commit while it is down.
        async with pg_clean.begin() as conn:
            cut = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
                )
            )
        assert cut >= 1

        async def listening() -> bool:
            return pg_wakeups.connected.is_set()

        await wait_for(listening, lambda up: not up, timeout_s=5)
        await deleted_event(pg_clean, "alice", "doc_while_down")
        await deleted_event(pg_clean, "bob", "doc_of_bob")

        # Back: the stream re-reads the outbox and finds what was committed meanwhile.
        await asyncio.wait_for(pg_wakeups.connected.wait(), 10)
        await wait_for(lambda: _joined(frames), lambda got: "doc_while_down" in got, timeout_s=5)
        await deleted_event(pg_clean, "alice", "doc_after")
        await wait_for(lambda: _joined(frames), lambda got: "doc_after" in got, timeout_s=5)
    finally:
        hub.close()
        await asyncio.wait_for(streaming, 5)
        await hub.release(subscription)
        await reader.close()
    joined = await _joined(frames)
    assert "doc_of_bob" not in joined
    assert [joined.count(doc) for doc in ("doc_before", "doc_while_down", "doc_after")] == [1, 1, 1]


async def _joined(frames: list[bytes]) -> str:
    return b"".join(frames).decode()


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'events.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_engine(url)
    yield engine
    await engine.dispose()


async def test_on_sqlite_commits_wake_in_memory_and_rollbacks_do_not(
    sqlite_engine: AsyncEngine,
) -> None:
    wakeups: Wakeups = LocalWakeups(sqlite_engine)
    await wakeups.start()
    woken: list[tuple[str, str]] = []
    wakeups.listen(EVENTS_CHANNEL, lambda payload: woken.append((EVENTS_CHANNEL, payload)))
    wakeups.listen(JOBS_CHANNEL, lambda payload: woken.append((JOBS_CHANNEL, payload)))
    try:
        async with sqlite_engine.connect() as conn:
            await record_events(conn, [DocumentChange.deleted("alice", "doc_x")])
            await conn.rollback()
        assert woken == []
        await deleted_event(sqlite_engine, "alice", "doc_y")
        assert [channel for channel, _ in woken] == [EVENTS_CHANNEL]
    finally:
        await wakeups.aclose()


async def test_on_sqlite_a_worker_is_woken_in_memory(
    sqlite_engine: AsyncEngine, make_settings: MakeSettings, tmp_path: Path
) -> None:
    wakeups = LocalWakeups(sqlite_engine)
    await wakeups.start()
    sessions = create_session_factory(sqlite_engine)
    storage = LocalStorage(tmp_path / "storage")
    settings = make_settings(database_url="sqlite+aiosqlite:///unused.db", janitor_interval_s=0)
    try:
        async with running_worker(
            sessions, storage, FixedClassifier(), settings, wakeups=wakeups, fallback_poll_s=60
        ):
            await asyncio.sleep(0.5)
            started = time.monotonic()
            stored = await store_document(sessions, storage, b"%PDF-1.4 invoice")
            await wait_for(
                lambda: get_document(sessions, stored.doc_id),
                lambda document: document.status == "complete",
                timeout_s=5,
            )
        assert time.monotonic() - started < 2.0
    finally:
        await wakeups.aclose()

"""Statements on the driver's connection: what SQLAlchemy would give, each its own transaction."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db import uploads as store
from upload_service.db.migrate import upgrade_to_head
from upload_service.db.models import Upload, utcnow
from upload_service.db.session import create_engine, create_session_factory

COLUMNS = [column.key for column in Upload.__mapper__.column_attrs]


@pytest.fixture
async def sqlite_engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a migrated SQLite database of the test's own."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"
    await asyncio.to_thread(upgrade_to_head, url)
    sqlite = create_engine(url, pool_size=2)
    yield sqlite
    await sqlite.dispose()


@pytest.fixture(params=["pg_clean", "sqlite_engine"])
def engine(request: pytest.FixtureRequest) -> AsyncEngine:
    """An engine on a migrated database of each backend, with its `uploads` table empty."""
    found: AsyncEngine = request.getfixturevalue(request.param)
    return found


async def new_upload(engine: AsyncEngine, upload_id: str = "up-1") -> Upload:
    upload = Upload(
        id=upload_id,
        owner="alice",
        length=1000,
        offset=0,
        upload_metadata="filename YS5wZGY=",
        filename="a.pdf",
        doc_id="doc_1",
        storage_key="raw/doc_1.pdf",
        storage_state={"parts": [{"n": 1, "etag": "x"}], "tail": None},
        state=store.OPEN,
        expires_at=utcnow() + timedelta(hours=1),
    )
    await store.create(create_session_factory(engine), upload, cap=20)
    return upload


async def as_sqlalchemy_reads_it(engine: AsyncEngine, upload_id: str) -> Upload:
    found = await store.find(create_session_factory(engine), upload_id)
    assert found is not None
    return found


async def test_the_leased_row_is_the_row_sqlalchemy_reads(engine: AsyncEngine) -> None:
    await new_upload(engine)
    leased = await store.lease_to_append(engine, "up-1", "alice", "holder-1", offset=0)
    assert leased is not None
    stored = await as_sqlalchemy_reads_it(engine, "up-1")
    for name in COLUMNS:
        mine, theirs = getattr(leased, name), getattr(stored, name)
        assert (mine, type(mine)) == (theirs, type(theirs)), name
    assert leased.locked_by == "holder-1"
    assert leased.expires_at.tzinfo is not None
    assert leased.storage_state == {"parts": [{"n": 1, "etag": "x"}], "tail": None}


async def test_each_compare_and_set_says_whether_it_held(engine: AsyncEngine) -> None:
    await new_upload(engine)
    assert await store.lease_to_append(engine, "up-1", "bob", "h", offset=0) is None
    assert await store.lease_to_append(engine, "up-1", "alice", "h", offset=5) is None
    leased = await store.lease_to_append(engine, "up-1", "alice", "holder-1", offset=0)
    assert leased is not None
    # Leased: a second request is refused until the first lets go.
    assert await store.lease_to_append(engine, "up-1", "alice", "holder-2", offset=0) is None

    expires = utcnow() + timedelta(hours=2)
    state = {"parts": [], "tail": {"key": "t", "size": 10}}
    moved = store.advance(
        engine, leased, "holder-2", offset=100, storage_state=state, expires_at=expires
    )
    assert not await moved  # Not the holder: nothing moves.
    assert await store.advance(
        engine, leased, "holder-1", offset=100, storage_state=state, expires_at=expires
    )
    stored = await as_sqlalchemy_reads_it(engine, "up-1")
    assert (stored.offset, stored.storage_state, stored.locked_by) == (100, state, None)
    assert stored.expires_at == expires.replace(microsecond=stored.expires_at.microsecond)
    # Moved once: the same move again finds the offset elsewhere.
    assert not await store.advance(
        engine, leased, "holder-1", offset=100, storage_state=state, expires_at=expires
    )


async def test_a_cancelled_caller_leaves_the_statement_committed(engine: AsyncEngine) -> None:
    await new_upload(engine)
    taking = asyncio.ensure_future(
        store.lease_to_append(engine, "up-1", "alice", "holder-1", offset=0)
    )
    await asyncio.sleep(0)
    taking.cancel()
    with pytest.raises(asyncio.CancelledError):
        await taking
    # The statement ran to its commit all the same, and gave its connection back clean: a
    # write of another transaction goes through at once (on SQLite an open transaction on a
    # pooled connection would hold the database's write lock).
    async with asyncio.timeout(5):
        while (await as_sqlalchemy_reads_it(engine, "up-1")).locked_by is None:
            await asyncio.sleep(0.01)
        async with create_session_factory(engine).begin() as session:
            await session.execute(update(Upload).where(Upload.id == "up-1").values(locked_by=None))
    assert (await as_sqlalchemy_reads_it(engine, "up-1")).locked_by is None

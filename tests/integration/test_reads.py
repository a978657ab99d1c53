"""The read path: prepared asyncpg statements give what SQLAlchemy gives, with no transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import String, cast, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from upload_service.db.models import Document
from upload_service.db.reads import Reader, open_reader
from upload_service.documents import service
from upload_service.errors import DatabaseUnavailable

OWNER = "alice"
# Assigns the transaction an id if it has none: the same id twice means one transaction.
XACT_ID = select(cast(func.pg_current_xact_id(), String).label("xact"))


@pytest.fixture
async def reader(pg_url: str, pg_pooler: bool, pg_clean: AsyncEngine) -> AsyncIterator[Reader]:
    opened = await open_reader(pg_url, pooler=pg_pooler)
    yield opened
    await opened.close()


async def add_documents(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    created = datetime(2026, 1, 15, 10, 30, 0, 123000, tzinfo=UTC)
    documents = [
        Document(
            owner=OWNER,
            status="complete",
            filename="invoice.pdf",
            content_type="application/pdf",
            size_bytes=1024,
            sha256="a" * 64,
            storage_key="raw/x.pdf",
            classification={"label": "invoice", "confidence": 0.97, "model_version": "ref-1"},
            created_at=created,
            updated_at=created,
        ),
        Document(
            owner=OWNER,
            status="failed",
            filename="scan.png",
            content_type="image/png",
            size_bytes=7,
            sha256="b" * 64,
            storage_key="raw/y.png",
            error={"code": "CLASSIFIER_UNAVAILABLE", "message": "down"},
        ),
    ]
    async with sessions.begin() as session:
        session.add_all(documents)
    return [document.id for document in documents]


async def test_prepared_reads_give_the_rows_sqlalchemy_gives(
    reader: Reader, pg_sessions: async_sessionmaker[AsyncSession], pg_url: str
) -> None:
    doc_ids = await add_documents(pg_sessions)
    through_sqlalchemy = Reader(reader.engine)  # The same reads without the asyncpg pool.
    for doc_id in doc_ids:
        fast = await service.read_document(reader, doc_id, OWNER)
        plain = await service.read_document(through_sqlalchemy, doc_id, OWNER)
        assert fast == plain
        assert fast.created_at.tzinfo is not None
    page = await service.list_documents(reader, OWNER, limit=1)
    assert page == await service.list_documents(through_sqlalchemy, OWNER, limit=1)
    assert page.next_cursor is not None
    rest = await service.list_documents(
        reader, OWNER, limit=5, after=service.decode_cursor(page.next_cursor), status="complete"
    )
    assert [item.doc_id for item in page.items + rest.items] == sorted(doc_ids, reverse=True)[:2]
    invoice = await service.read_document(reader, doc_ids[0], OWNER)
    assert invoice.classification is not None
    assert invoice.classification.label == "invoice"


async def test_each_read_is_its_own_transaction(reader: Reader) -> None:
    for _ in range(3):  # Connections come back from the pool the same way.
        first = await reader.one(XACT_ID, {})
        second = await reader.one(XACT_ID, {})
        assert first is not None
        assert second is not None
        assert first["xact"] != second["xact"]


async def test_reads_run_under_the_statement_timeout(reader: Reader) -> None:
    timeout = await reader.one(select(func.current_setting("statement_timeout").label("t")), {})
    assert timeout == {"t": "30s"}


async def test_the_writers_engine_still_groups_statements(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as connection:
        first = await connection.scalar(text("SELECT pg_current_xact_id()::text"))
        assert first == await connection.scalar(text("SELECT pg_current_xact_id()::text"))
        await connection.rollback()


async def test_the_read_pool_connects_with_the_urls_options(pg_url: str) -> None:
    # This server has no TLS: a URL that requires it must fail here as it does for the engine,
    # not quietly read in clear text.
    reader = await open_reader(f"{pg_url}?ssl=require")
    try:
        with pytest.raises(DatabaseUnavailable):
            await reader.one(XACT_ID, {})
    finally:
        await reader.close()

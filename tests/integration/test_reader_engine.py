"""The read pool: every statement is its own transaction, so a read never pays BEGIN/COMMIT."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.session import create_reader_engine

# Assigns the transaction an id if it has none: the same id twice means one transaction.
XACT_ID = text("SELECT pg_current_xact_id()::text")


async def test_reads_run_outside_any_transaction(pg_url: str) -> None:
    reader = create_reader_engine(pg_url)
    try:
        for _ in range(3):  # Connections come back from the pool the same way.
            async with reader.connect() as connection:
                first = await connection.scalar(XACT_ID)
                second = await connection.scalar(XACT_ID)
                assert first != second
    finally:
        await reader.dispose()


async def test_the_writers_engine_still_groups_statements(pg_engine: AsyncEngine) -> None:
    async with pg_engine.connect() as connection:
        assert await connection.scalar(XACT_ID) == await connection.scalar(XACT_ID)
        await connection.rollback()

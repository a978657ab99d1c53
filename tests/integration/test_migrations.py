"""Migrations: `upgrade head` works on PostgreSQL and SQLite and matches the models exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from upload_service.db.migrate import upgrade_to_head
from upload_service.db.models import Base
from upload_service.db.session import create_engine


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _check(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            assert {"documents", "jobs", "idempotency_keys"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_postgres_at_head_matches_the_models(pg_url: str) -> None:
    # pg_url was migrated by the fixture; upgrading again is a no-op. (Alembic's env runs its
    # own event loop, so these tests are synchronous.)
    upgrade_to_head(pg_url)
    asyncio.run(_check(pg_url))


def test_sqlite_at_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nested/dir/app.db"
    upgrade_to_head(url)
    asyncio.run(_check(url))

"""Engine and session factory, built by the lifespan and closed with it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

STATEMENT_TIMEOUT_MS = 30_000


def create_engine(
    database_url: str, *, echo: bool = False, pool_size: int = 10, **options: Any
) -> AsyncEngine:
    """An async engine tuned for the backend: pooled asyncpg, or SQLite with WAL."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(
            database_url, echo=echo, connect_args={"timeout": 30}, **options
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        database_url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        # The server enforces the statement timeout: cheaper than a client timer per statement.
        connect_args={
            "timeout": 5,
            "server_settings": {"statement_timeout": str(STATEMENT_TIMEOUT_MS)},
        },
        **options,
    )


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
    cursor: Any = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_reader_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """A pool of its own whose connections are always in autocommit, for single-statement reads.

    A lone SELECT needs no transaction: autocommit saves the BEGIN and COMMIT round trips,
    which are most of a small read's cost; every write still goes through a session. Its own
    pool rather than the writers' with an autocommit option: that option switches each
    connection's isolation level on checkout and back on checkin, and a connection that never
    opens a transaction has nothing to roll back when it returns.
    """
    return create_engine(
        database_url, pool_size=pool_size, isolation_level="AUTOCOMMIT", pool_reset_on_return=None
    )


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


async def ping(engine: AsyncEngine) -> None:
    """Round-trip to the database; raises when it is unreachable."""
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))

"""Engine and session factory, built by the lifespan and closed with it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
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
# How long a request waits for a pooled connection before it is a 503: a pool exhausted for
# longer than this is an outage to report, not a queue to join.
POOL_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class ConnectionShares:
    """How one process's `DB_MAX_CONNECTIONS` is split between its pools, never exceeded.

    Writes (request sessions, the upload's transaction, the worker, readiness) get the larger
    share: they hold a connection for a transaction. Reads hold one for a single statement.
    Neither pool overflows, and the odd read off the prepared path shares the writers' pool.
    On PostgreSQL one more connection LISTENs for wake-ups; it comes out of the writers' share.
    """

    writes: int
    reads: int
    listen: int = 0

    @classmethod
    def of(cls, max_connections: int, *, listener: bool = False) -> ConnectionShares:
        """The split of `max_connections`: two fifths to reads, at least one each (and one to
        the listening connection when there is one: `max_connections` is then at least 3)."""
        reads = max(1, max_connections * 2 // 5)
        listen = 1 if listener else 0
        return cls(writes=max_connections - reads - listen, reads=reads, listen=listen)


def pooler_connect_args() -> dict[str, Any]:
    """asyncpg's options behind a transaction pooler (PgBouncer `pool_mode = transaction`).

    Consecutive transactions of one client may run on different server connections, so a
    statement prepared under a name in one may be missing, or another client's, in the next:
    asyncpg's statement cache and SQLAlchemy's are off, and each statement SQLAlchemy prepares
    (it always does, for the result's columns) gets a name of its own. No `statement_timeout`
    startup parameter either: PgBouncer refuses it; set it on the database role instead.
    """
    return {
        "timeout": 5,
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unique_statement_name,
    }


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid.uuid4().hex}__"


def create_engine(
    database_url: str,
    *,
    echo: bool = False,
    pool_size: int = 10,
    pooler: bool = False,
    **options: Any,
) -> AsyncEngine:
    """An async engine tuned for the backend: pooled asyncpg, or SQLite with WAL.

    The pool holds `pool_size` connections and never more (no overflow), on SQLite too; a
    checkout waits at most `POOL_TIMEOUT_S`. `pooler`: `database_url` is a transaction pooler
    (`pooler_connect_args`).
    """
    if database_url.startswith("sqlite"):
        # Every transaction ends in its `Connection` (commit, or the rollback its close does), so
        # the pool's own rollback on checkin only ever rolls back nothing, and costs aiosqlite a
        # thread hop per statement's session. asyncpg skips it by itself (no transaction open).
        options.setdefault("pool_reset_on_return", None)
        engine = create_async_engine(
            database_url,
            echo=echo,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_S,
            connect_args={"timeout": 30},
            **options,
        )
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(
        database_url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=POOL_TIMEOUT_S,
        pool_pre_ping=False,
        pool_recycle=1800,
        # The server enforces the statement timeout: cheaper than a client timer per statement.
        connect_args=pooler_connect_args()
        if pooler
        else {"timeout": 5, "server_settings": {"statement_timeout": str(STATEMENT_TIMEOUT_MS)}},
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

"""Single-statement reads for the hot routes, without a transaction and with as little as possible
between the statement and the driver.

A read is a Core `select()` built once at import, with `bindparam`s for its inputs, so the SQL
lives in one place for both backends. On PostgreSQL it is compiled once to asyncpg's SQL and
run on an asyncpg pool of its own: SQLAlchemy's execution path (greenlet hop, execution
context, result metadata, pool events) cost four times the driver's round trip on the
authenticated document read, most of that read's time. The guarantees stay: pooled connections
in autocommit, the server's statement timeout, bound parameters, and rows of the same Python
types SQLAlchemy gives (a test compares the two paths column by column). On SQLite the same
statements go through SQLAlchemy's autocommit engine.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Select, make_url
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.outage import UNREACHABLE, unavailable
from upload_service.db.session import (
    POOL_TIMEOUT_S,
    STATEMENT_TIMEOUT_MS,
    create_engine,
    create_reader_engine,
)

Row = Mapping[str, Any]
_MAX_COMPILED = 256
_DIALECT = asyncpg_dialect()  # type: ignore[no-untyped-call]  # untyped constructor


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]
    # Values of literals in the statement (bound too); empty for a statement of bindparams only.
    defaults: dict[str, Any]


class Reader:
    """Runs prepared reads; `engine` (autocommit) serves any other one-off read."""

    def __init__(
        self, engine: AsyncEngine, pool: asyncpg.Pool | None = None, *, owns_engine: bool = True
    ) -> None:
        self.engine = engine
        self._pool = pool
        self._owns_engine = owns_engine
        # Keyed by the statement object: reads are module constants, compiled on first use.
        self._compiled: dict[Select[Any], _Compiled] = {}

    def _arguments(self, query: Select[Any], params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        compiled = self._compiled.get(query)
        if compiled is None:
            statement = query.compile(dialect=_DIALECT)
            binds = statement.binds
            defaults = {
                name: value
                for name, value in statement.params.items()
                if name in binds and not binds[name].required
            }
            compiled = _Compiled(statement.string, tuple(statement.positiontup or ()), defaults)
            if len(self._compiled) < _MAX_COMPILED:  # A statement built per call is not kept.
                self._compiled[query] = compiled
        values: Mapping[str, Any] = {**compiled.defaults, **params} if compiled.defaults else params
        return compiled.sql, [values[name] for name in compiled.names]

    async def one(self, query: Select[Any], params: Mapping[str, Any]) -> Row | None:
        """The first row of `query`, or None; `DatabaseUnavailable` when it cannot be reached."""
        try:
            return await self._one(query, params)
        except UNREACHABLE as exc:
            raise unavailable(exc, "read") from None

    async def all(self, query: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        """Every row of `query`; `DatabaseUnavailable` when it cannot be reached."""
        try:
            return await self._all(query, params)
        except UNREACHABLE as exc:
            raise unavailable(exc, "read") from None

    async def _acquire(self, pool: asyncpg.Pool) -> asyncpg.pool.PoolConnectionProxy:
        # asyncpg waits for a free connection forever unless told otherwise; its own `timeout=`
        # wraps the wait in a task per read on Python 3.11, a timer costs far less, and no
        # timer at all when a connection is idle (the common case: the acquire cannot wait).
        if pool.get_idle_size():
            return await pool.acquire()
        async with asyncio.timeout(POOL_TIMEOUT_S):
            return await pool.acquire()

    async def _one(self, query: Select[Any], params: Mapping[str, Any]) -> Row | None:
        if self._pool is None:
            async with self.engine.connect() as connection:
                found = (await connection.execute(query, dict(params))).mappings().first()
            return None if found is None else dict(found)
        sql, arguments = self._arguments(query, params)
        pooled = await self._acquire(self._pool)
        try:
            record = await pooled.fetchrow(sql, *arguments)
        finally:
            await self._pool.release(pooled)
        return None if record is None else dict(record.items())

    async def _all(self, query: Select[Any], params: Mapping[str, Any]) -> Sequence[Row]:
        if self._pool is None:
            async with self.engine.connect() as connection:
                rows = (await connection.execute(query, dict(params))).mappings().all()
            return [dict(row) for row in rows]
        sql, arguments = self._arguments(query, params)
        pooled = await self._acquire(self._pool)
        try:
            records = await pooled.fetch(sql, *arguments)
        finally:
            await self._pool.release(pooled)
        return [dict(record.items()) for record in records]

    async def close(self) -> None:
        """Close the pools."""
        if self._pool is not None:
            await self._pool.close()
        if self._owns_engine:
            await self.engine.dispose()


async def _decode_json(connection: asyncpg.Connection) -> None:
    # SQLAlchemy's JSON columns come back as Python values; asyncpg gives JSON as text.
    for name in ("json", "jsonb"):
        await connection.set_type_codec(
            name, schema="pg_catalog", encoder=json.dumps, decoder=json.loads
        )


async def open_reader(
    database_url: str,
    *,
    pool_size: int = 10,
    writers: AsyncEngine | None = None,
    pooler: bool = False,
) -> Reader:
    """The reader for `database_url`: an asyncpg pool on PostgreSQL, else SQLAlchemy's engine.

    On PostgreSQL the odd read that is not a prepared one (a batch check) runs on `writers`'
    pool in autocommit when given, so the process opens no third pool; else on a small one.
    `pooler`: `database_url` is a transaction pooler, where statements are prepared unnamed
    (asyncpg's cache off), and a one-off read runs in a transaction: SQLAlchemy prepares
    before it executes, and outside a transaction the pooler may send the two to different
    server connections.
    """
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql":
        return Reader(create_reader_engine(database_url, pool_size=pool_size))
    if writers is not None:
        # asyncpg's autocommit is a flag on the adapter: switching it costs no round trip.
        engine = writers if pooler else writers.execution_options(isolation_level="AUTOCOMMIT")
    elif pooler:
        engine = create_engine(database_url, pool_size=2, pooler=True)
    else:
        engine = create_reader_engine(database_url, pool_size=2)
    # Connect exactly as SQLAlchemy's engine does: the same host, credentials and URL options
    # (`?ssl=require` included), less the options only SQLAlchemy's dialect understands.
    _, connect = _DIALECT.create_connect_args(url)  # type: ignore[no-untyped-call]
    for dialect_only in ("prepared_statement_cache_size", "prepared_statement_name_func"):
        connect.pop(dialect_only, None)
    # Behind a pooler: unnamed statements only, and the timeout is the role's (see session.py).
    server: dict[str, Any] = (
        {"statement_cache_size": 0}
        if pooler
        else {"server_settings": {"statement_timeout": str(STATEMENT_TIMEOUT_MS)}}
    )
    try:
        pool = await asyncpg.create_pool(
            **connect,
            **server,
            min_size=0,  # Connect on first use: start-up must not need the database.
            max_size=pool_size,
            timeout=5,
            init=_decode_json,
        )
    except BaseException:
        if writers is None:
            await engine.dispose()
        raise
    return Reader(engine, pool, owns_engine=writers is None)

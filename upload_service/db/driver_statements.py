"""Hot single statements run straight on the driver's connection, compiled once per dialect.

Every tus PATCH runs two statements (take the lease, move the offset). Through a session, or even
a Core connection, SQLAlchemy's execution path (execution context, parameter processing, result
metadata, a greenlet hop per call) cost about 2 ms of CPU per PATCH on SQLite, several times what
the driver spends; a 1 MiB PATCH's bytes cost about as much. So such a statement is a Core
statement built once (the SQL still lives in one place for both backends), compiled here once for
the engine's dialect, and run on a connection checked out of the same pool, with the same
parameter and result conversions SQLAlchemy would apply (each column type's own processors for
that dialect), so rows come back with the same Python types.

One statement is its own transaction: SQLite commits it at once, asyncpg runs it in autocommit.
Driver errors surface as SQLAlchemy's exceptions, so `outage.database_required` maps an outage
to a 503 as on every other path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Delete, Insert, Update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

Row = dict[str, Any]
Processor = Callable[[Any], Any]


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    # Per positional parameter: its bind name and its type's conversion for the driver.
    parameters: tuple[tuple[str, Processor | None], ...]
    # Values of literals in the statement (`state == 'open'`): bound too, fixed.
    literals: dict[str, Any]
    # Per returned column: its name and its type's conversion from the driver.
    columns: tuple[tuple[str, Processor | None], ...]


class DriverStatement:
    """A DML statement (with `RETURNING` if rows are wanted back) run on the driver's connection.

    Parameters are `bindparam`s passed by name; `rows()` returns the returned rows as dicts.
    A statement without `RETURNING` returns no rows: add `RETURNING` of a column to learn
    whether a row was changed.
    """

    def __init__(self, statement: Update | Insert | Delete) -> None:
        self._statement = statement
        self._compiled: tuple[Dialect, _Compiled] | None = None

    def _compile(self, dialect: Dialect) -> _Compiled:
        cached = self._compiled
        if cached is not None and cached[0] is dialect:
            return cached[1]
        compiled = self._statement.compile(dialect=dialect)
        binds = compiled.binds
        parameters = tuple(
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect))
            for name in compiled.positiontup or ()
        )
        literals = {
            name: value
            for name, value in compiled.params.items()
            if name in binds and not binds[name].required
        }
        columns = tuple(
            (column.name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in self._statement.exported_columns
        )
        result = _Compiled(compiled.string, parameters, literals, columns)
        self._compiled = (dialect, result)
        return result

    async def rows(self, engine: AsyncEngine, params: Mapping[str, Any]) -> list[Row]:
        """Run the statement in a transaction of its own; the rows it returned.

        Shielded: a caller cancelled meanwhile (a client that left) still lets the statement
        end in its commit or rollback, so no pooled connection goes back inside a transaction.
        """
        compiled = self._compile(engine.dialect)
        arguments = _converted(compiled.parameters, {**compiled.literals, **params})
        running = asyncio.ensure_future(_run(engine, compiled, arguments))
        return await asyncio.shield(running)


async def _run(engine: AsyncEngine, compiled: _Compiled, arguments: list[Any]) -> list[Row]:
    dialect = engine.dialect
    async with engine.connect() as connection:
        pooled = await connection.get_raw_connection()
        driver: Any = pooled.driver_connection
        try:
            if dialect.name == "sqlite":
                # aiosqlite: the statement and its fetch in one hop to its thread, the commit in
                # another (sqlite3 began a transaction for the statement).
                found = await driver.execute_fetchall(compiled.sql, arguments)
                await driver.commit()
            else:
                found = await driver.fetch(compiled.sql, *arguments)  # asyncpg: autocommit
        except Exception as exc:
            if dialect.name == "sqlite":
                await _roll_back_or_invalidate(driver, connection)
            raise _as_sqlalchemy_error(exc, compiled.sql, dialect) from exc
    return [_row(compiled.columns, raw) for raw in found]


async def _roll_back_or_invalidate(driver: Any, connection: AsyncConnection) -> None:
    try:
        await driver.rollback()
    except Exception:
        await connection.invalidate()  # Not known to be clean: it leaves the pool.


def _converted(
    parameters: Sequence[tuple[str, Processor | None]], values: Mapping[str, Any]
) -> list[Any]:
    return [
        values[name] if convert is None else convert(values[name]) for name, convert in parameters
    ]


def _row(columns: Sequence[tuple[str, Processor | None]], raw: Sequence[Any]) -> Row:
    return {
        name: value if convert is None else convert(value)
        for (name, convert), value in zip(columns, raw, strict=True)
    }


def _as_sqlalchemy_error(exc: Exception, sql: str, dialect: Dialect) -> Exception:
    # The driver's own error, wrapped as SQLAlchemy wraps it (sqlite3's OperationalError becomes
    # SQLAlchemy's), so the outage mapping sees the same classes on this path as on the others.
    dbapi = dialect.loaded_dbapi
    if isinstance(exc, dbapi.Error):
        return DBAPIError.instance(sql, None, exc, dbapi.Error, dialect=dialect)
    return exc

"""Alembic from code: migrate (the CLI, the embedded default's start-up, the tests), and tell
whether a database's schema is at head (PostgreSQL, which only the `migrate` command changes).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from alembic import command
from upload_service.errors import DatabaseUnavailable, SchemaNotAtHead

logger = logging.getLogger(__name__)

# alembic/ sits beside the package at the top of the repository (and of the container image).
ALEMBIC_INI = Path(__file__).resolve().parents[2] / "alembic.ini"
# How long a process waits for another one's migration of the same SQLite file.
MIGRATION_LOCK_TIMEOUT_S = 300.0
VERSION_TABLE = "alembic_version"  # Alembic's default; alembic/env.py keeps it.
SCHEMA_BEHIND = "schema not at head, run upload-service migrate"


def alembic_config(database_url: str) -> Config:
    """An Alembic config that points at `database_url`."""
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_to_head(database_url: str) -> None:
    """Bring the database to the newest schema; a no-op when it is already there.

    On a SQLite file, one process at a time: gunicorn's workers all start at once, and Alembic
    on SQLite runs without transactional DDL, so two of them would both create the tables.
    """
    database = _sqlite_file(database_url)
    if database is None:
        command.upgrade(alembic_config(database_url), "head")
        return
    # SQLite creates the file, not the folder it lives in.
    database.parent.mkdir(parents=True, exist_ok=True)
    with _migration_lock(database):
        command.upgrade(alembic_config(database_url), "head")


def _sqlite_file(database_url: str) -> Path | None:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


@contextmanager
def _migration_lock(database: Path) -> Iterator[None]:
    # SQLite's own file lock, portable where fcntl is not, on a file of its own: a lock on the
    # database itself would also shut out the migration's own connection.
    lock = sqlite3.connect(
        database.with_name(f"{database.name}.migration-lock"),
        timeout=MIGRATION_LOCK_TIMEOUT_S,
        isolation_level=None,
    )
    try:
        lock.execute("BEGIN EXCLUSIVE")  # Waits while another process holds it.
        try:
            yield
        finally:
            lock.execute("ROLLBACK")
    finally:
        lock.close()


@cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(Config(str(ALEMBIC_INI)))


def head_revisions() -> frozenset[str]:
    """The revisions this code's migrations end at."""
    return frozenset(_scripts().get_heads())


@cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def is_behind(current: tuple[str, ...]) -> bool:
    """Whether a database at `current` needs `upload-service migrate` before this code runs.

    A revision this code does not know comes from a newer release, whose migrations keep
    working for the code before it (expand, then contract): that is not behind, or a rolling
    deployment would take its old pods out of rotation as soon as the migration ran.
    """
    if not current:
        return True
    return any(rev in _known_revisions() and rev not in head_revisions() for rev in current)


def _current_revisions(connection: Connection) -> tuple[str, ...]:
    # The table read directly: Alembic's MigrationContext logs two lines each time it is made,
    # and a worker waiting for a migration asks every few seconds.
    if not inspect(connection).has_table(VERSION_TABLE):
        return ()
    return tuple(connection.scalars(text(f"SELECT version_num FROM {VERSION_TABLE}")))  # noqa: S608


async def current_revisions(engine: AsyncEngine) -> tuple[str, ...]:
    """The revisions the database is at; empty when it was never migrated."""
    async with engine.connect() as connection:
        return await connection.run_sync(_current_revisions)


class SchemaState:
    """Whether the database's schema is at head, as this process last saw it.

    Once at head, it stays so for the process's life (migrations only move forward), so the
    check costs nothing on every request. While behind, the database is asked again at most
    every `recheck_s`, so a flood of requests costs one query per interval, and the process
    notices a migration without a restart. One line is logged when it is first seen behind,
    and one when it reaches head.
    """

    def __init__(
        self, engine: AsyncEngine, *, at_head: bool = False, recheck_s: float = 1.0
    ) -> None:
        self.at_head = at_head
        self._engine = engine
        self._recheck_s = recheck_s
        self._behind_seen_at: float | None = None

    async def check(self) -> bool:
        """At head? Raises when the database cannot be asked."""
        if self.at_head:
            return True
        now = time.monotonic()
        if self._behind_seen_at is not None and now - self._behind_seen_at < self._recheck_s:
            return False
        current = await current_revisions(self._engine)
        if is_behind(current):
            if self._behind_seen_at is None:
                logger.warning(
                    "database schema not at head (database at %s, this code needs %s): run "
                    "`upload-service migrate`; jobs wait and requests answer 503 until then",
                    ", ".join(current) or "no revision",
                    ", ".join(sorted(head_revisions())),
                )
            self._behind_seen_at = now
            return False
        if self._behind_seen_at is not None:
            logger.info("database schema at head (%s)", ", ".join(current))
        self.at_head = True
        return True

    async def require(self) -> None:
        """Return at head; raise `SchemaNotAtHead` while behind, `DatabaseUnavailable` when
        the database cannot be asked."""
        try:
            at_head = await self.check()
        except Exception as exc:
            logger.warning("schema check failed: database unreachable (%s)", type(exc).__name__)
            raise DatabaseUnavailable() from None
        if not at_head:
            raise SchemaNotAtHead()

    async def wait_at_head(self, poll_s: float = 3.0) -> None:
        """Return once the schema is at head, asking every `poll_s`; quiet while it waits."""
        unreachable = False
        while True:
            try:
                if await self.check():
                    return
                unreachable = False
            except Exception as exc:
                if not unreachable:  # One line per outage, not one per poll.
                    logger.warning(
                        "schema check failed: database unreachable (%s); retrying every %gs",
                        type(exc).__name__,
                        poll_s,
                    )
                unreachable = True
            await asyncio.sleep(poll_s)

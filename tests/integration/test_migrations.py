"""Migrations: `upgrade head` works on PostgreSQL and SQLite and matches the models exactly."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.engine import Connection

from upload_service.db.migrate import head_revisions, is_behind, upgrade_to_head
from upload_service.db.models import Base
from upload_service.db.session import create_engine

REPO = Path(__file__).resolve().parents[2]


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names())


async def _check(url: str, *, pooler: bool = False) -> None:
    engine = create_engine(url, pooler=pooler)
    try:
        async with engine.connect() as conn:
            assert {"documents", "jobs", "idempotency_keys"} <= await conn.run_sync(_tables)
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


def test_postgres_at_head_matches_the_models(
    pg_url: str, pg_direct_url: str, pg_pooler: bool
) -> None:
    # pg_url was migrated by the fixture; upgrading again is a no-op. (Alembic's env runs its
    # own event loop, so these tests are synchronous.) Migrations take the direct connection,
    # as `upload-service migrate` does behind PgBouncer.
    upgrade_to_head(pg_direct_url)
    asyncio.run(_check(pg_url, pooler=pg_pooler))


def test_sqlite_at_head_matches_the_models(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path}/nested/dir/app.db"
    upgrade_to_head(url)
    asyncio.run(_check(url))


MIGRATE_AT_SIGNAL = """
import logging, sys, time
from pathlib import Path
from upload_service.db.migrate import upgrade_to_head
logging.basicConfig(level=logging.INFO)
ready, go = Path(sys.argv[2]), Path(sys.argv[3])
ready.touch()
for _ in range(1000):
    if go.exists():
        break
    time.sleep(0.005)
upgrade_to_head(sys.argv[1])
"""


def test_processes_starting_at_once_migrate_one_sqlite_file_once(tmp_path: Path) -> None:
    # As gunicorn's workers do when each starts the app on a fresh embedded database.
    url = f"sqlite+aiosqlite:///{tmp_path}/var/app.db"
    go = tmp_path / "go"
    ready = [tmp_path / f"ready-{n}" for n in range(3)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_AT_SIGNAL, url, str(flag), str(go)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for flag in ready
    ]
    deadline = time.monotonic() + 30
    while not all(flag.exists() for flag in ready) and time.monotonic() < deadline:
        time.sleep(0.02)
    go.touch()  # All of them at once.
    outputs = [process.communicate(timeout=60)[0].decode() for process in processes]
    assert [process.returncode for process in processes] == [0, 0, 0], outputs
    assert sum("Running upgrade  -> 0001" in output for output in outputs) == 1, outputs
    asyncio.run(_check(url))


def test_head_is_the_newest_revision_and_only_an_older_one_is_behind() -> None:
    assert head_revisions() == {"0006"}
    assert is_behind(())  # Never migrated.
    assert is_behind(("0001",))  # A known older revision.
    assert is_behind(("0002",))
    assert not is_behind(("0006",))
    assert is_behind(("0005",))
    # A revision this code does not know is a newer release's: not behind (rolling deploys).
    assert not is_behind(("9999_from_a_newer_release",))

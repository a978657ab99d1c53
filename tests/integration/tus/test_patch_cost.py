"""What one PATCH costs the database: two statements in two transactions, nothing else.

The lease (taken with the offset checked) and the offset's move (which lets the lease go) are
the whole of a middle PATCH's database work: no look-up of settings, expiry or the cap, no
rollback (on SQLite each statement, commit and rollback is a thread hop). Both run on the
driver's connection (`db/driver_statements.py`), one pool checkout each, and nothing goes
through SQLAlchemy's execution path.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, running_app
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.tus.conftest import create_upload, patch
from upload_service.main import create_app


@dataclass
class DatabaseWork:
    """What the engine was asked to do while counted."""

    statements: list[str] = field(default_factory=list)
    commits: int = 0
    rollbacks: int = 0
    checkouts: int = 0


@contextmanager
def counted(engine: AsyncEngine) -> Iterator[DatabaseWork]:
    work = DatabaseWork()
    sync_engine = engine.sync_engine

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        work.statements.append(statement.split(None, 1)[0].upper())

    def on_commit(_conn: Any) -> None:
        work.commits += 1

    def on_rollback(_conn: Any) -> None:
        work.rollbacks += 1

    def on_checkout(*_args: Any) -> None:
        work.checkouts += 1

    listeners: list[tuple[Any, str, Any]] = [
        (sync_engine, "before_cursor_execute", on_statement),
        (sync_engine, "commit", on_commit),
        (sync_engine, "rollback", on_rollback),
        (sync_engine.pool, "checkout", on_checkout),
    ]
    for target, name, listener in listeners:
        event.listen(target, name, listener)
    try:
        yield work
    finally:
        for target, name, listener in listeners:
            event.remove(target, name, listener)


def writer_engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine | None = app.state.resources.engine
    assert engine is not None
    return engine


async def assert_a_middle_patch_is_two_statements(
    app: FastAPI, client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    content = pdf_bytes(pad=30_000)
    location = await create_upload(client, headers, len(content))
    assert (await patch(client, headers, location, 0, content[:10_000])).status_code == 204
    with counted(writer_engine(app)) as work:
        response = await patch(client, headers, location, 10_000, content[10_000:20_000])
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == "20000"
    # The lease (UPDATE … RETURNING) and the offset's move with the lease's release, each on a
    # connection of its own checked out once; nothing through SQLAlchemy's execution path.
    assert work.checkouts == 2
    assert work.statements == []
    assert work.commits == 0
    assert work.rollbacks == 0
    # Both statements were committed: the offset moved and the lease is free for the next one.
    response = await patch(client, headers, location, 20_000, content[20_000:])
    assert response.status_code == 204, response.text


async def test_a_middle_patch_is_two_statements_on_postgresql(
    app: FastAPI, client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    await assert_a_middle_patch_is_two_statements(app, client, auth_headers)


@pytest.fixture
def embedded_app(make_settings: MakeSettings, tmp_path: Path) -> FastAPI:
    return create_app(make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"))


@pytest.fixture
async def embedded(embedded_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(embedded_app) as client:
        yield client


async def test_a_middle_patch_is_two_statements_on_sqlite(
    embedded_app: FastAPI, embedded: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    await assert_a_middle_patch_is_two_statements(embedded_app, embedded, auth_headers)

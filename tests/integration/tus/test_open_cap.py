"""The per-user cap of unfinished uploads holds when one user's creations arrive all at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.security.conftest import assert_envelope, bearer
from tests.integration.tus.conftest import TUS, metadata
from upload_service.db.models import Upload
from upload_service.db.session import create_engine
from upload_service.main import create_app

CAP = 5
AT_ONCE = 20


async def _create_at_once(client: httpx.AsyncClient, headers: dict[str, str]) -> list[int]:
    async def one(n: int) -> httpx.Response:
        return await client.post(
            "/v1/uploads/tus",
            headers={
                **headers,
                **TUS,
                "Upload-Length": "100",
                "Upload-Metadata": metadata(filename=f"{n}.pdf"),
            },
        )

    responses = await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(AT_ONCE))), 60)
    for refused in (r for r in responses if r.status_code == 429):
        assert_envelope(refused, 429, "TOO_MANY_OPEN_UPLOADS")
    return sorted(r.status_code for r in responses)


async def _held_by(engine: AsyncEngine, owner: str) -> int:
    async with engine.connect() as conn:
        counted = await conn.scalar(
            select(func.count()).select_from(Upload).where(Upload.owner == owner)
        )
    return int(counted or 0)


async def test_concurrent_creations_of_one_user_stop_at_the_cap_on_postgresql(
    make_settings: MakeSettings, make_token: MakeToken, pg_clean: AsyncEngine
) -> None:
    # A pool as wide as the burst, so every creation is in its transaction at once.
    settings = make_settings(
        tus_max_open_uploads=CAP, db_max_connections=40, upload_rate_limit="1000/minute"
    )
    async with running_app(create_app(settings)) as client:
        statuses = await _create_at_once(client, bearer(make_token("alice")))
    assert statuses == [201] * CAP + [429] * (AT_ONCE - CAP)
    assert await _held_by(pg_clean, "alice") == CAP


async def test_concurrent_creations_of_one_user_stop_at_the_cap_on_sqlite(
    make_settings: MakeSettings, make_token: MakeToken, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}"
    settings = make_settings(
        database_url=url, tus_max_open_uploads=CAP, upload_rate_limit="1000/minute"
    )
    async with running_app(create_app(settings)) as client:
        statuses = await _create_at_once(client, bearer(make_token("alice")))
    engine = create_engine(url)
    try:
        held = await _held_by(engine, "alice")
    finally:
        await engine.dispose()
    assert statuses == [201] * CAP + [429] * (AT_ONCE - CAP)
    assert held == CAP

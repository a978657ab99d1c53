"""On SQLite (one process) an owner's open streams are counted in memory."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from upload_service.errors import TooManyStreams
from upload_service.events.stream_slots import (
    LocalStreamSlots,
    PgStreamSlots,
    create_stream_slots,
)


async def test_the_cap_is_per_owner_and_a_slot_given_back_is_free_again() -> None:
    slots = LocalStreamSlots(2)
    first = await slots.take("alice")
    await slots.take("alice")
    with pytest.raises(TooManyStreams):
        await slots.take("alice")
    await slots.take("bob")
    await slots.give_back(first)
    await slots.give_back(first)  # Once per slot.
    await slots.take("alice")
    with pytest.raises(TooManyStreams):
        await slots.take("alice")


async def test_the_backend_picks_the_count() -> None:
    sqlite = create_async_engine("sqlite+aiosqlite://")
    postgres = create_async_engine("postgresql+asyncpg://postgres@127.0.0.1:1/none")
    try:
        assert isinstance(create_stream_slots(sqlite, 5, lease_s=30), LocalStreamSlots)
        assert isinstance(create_stream_slots(postgres, 5, lease_s=30), PgStreamSlots)
    finally:
        await sqlite.dispose()
        await postgres.dispose()

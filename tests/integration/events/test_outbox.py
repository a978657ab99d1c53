"""The outbox: every status change of a document is one event, written in the change's own
transaction, in order, for its owner only."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, MakeToken
from tests.integration.jobs.support import (
    FixedClassifier,
    FlakyClassifier,
    get_document,
    running_worker,
    wait_for,
)
from tests.samples import TEXTS, pdf_bytes
from upload_service.db.models import DocumentEvent
from upload_service.documents.schemas import DocumentOut
from upload_service.errors import ClassifierFailed
from upload_service.events.outbox import DocumentChange, record_events
from upload_service.events.retention import purge_old_events
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]


async def events_of(sessions: Sessions, owner: str) -> list[DocumentEvent]:
    async with sessions() as session:
        query = select(DocumentEvent).where(DocumentEvent.owner == owner)
        return list(await session.scalars(query.order_by(DocumentEvent.id)))


async def upload(client: httpx.AsyncClient, token: str) -> str:
    response = await client.post(
        "/v1/documents",
        files={"file": ("a.pdf", pdf_bytes(TEXTS["invoice"][0]), "application/pdf")},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["doc_id"])


async def test_upload_processing_complete_reprocess_and_delete_are_each_one_event(
    client: httpx.AsyncClient,
    pg_sessions: Sessions,
    make_settings: MakeSettings,
    make_token: MakeToken,
    tmp_path: Path,
) -> None:
    alice = {"Authorization": f"Bearer {make_token('alice')}"}
    doc_id = await upload(client, make_token("alice"))
    other = await upload(client, make_token("bob"))
    storage = LocalStorage(tmp_path / "storage")
    async with running_worker(pg_sessions, storage, FixedClassifier(), make_settings()):
        await wait_for(lambda: get_document(pg_sessions, doc_id), lambda d: d.status == "complete")
        shown = (await client.get(f"/v1/documents/{doc_id}", headers=alice)).json()
        assert (await client.post(f"/v1/documents/{doc_id}/process", headers=alice)).is_success
        await wait_for(lambda: events_of(pg_sessions, "alice"), lambda found: len(found) == 6)
    assert (await client.delete(f"/v1/documents/{doc_id}", headers=alice)).status_code == 204

    events = await events_of(pg_sessions, "alice")
    assert [(e.event, e.doc_id, e.data.get("status")) for e in events] == [
        ("document.updated", doc_id, "queued"),
        ("document.updated", doc_id, "processing"),
        ("document.updated", doc_id, "complete"),
        ("document.updated", doc_id, "queued"),
        ("document.updated", doc_id, "processing"),
        ("document.updated", doc_id, "complete"),
        ("document.deleted", doc_id, None),
    ]
    # Each event's document is what GET showed at that moment.
    assert events[2].data == shown
    assert events[-1].data == {"doc_id": doc_id}
    assert {e.doc_id for e in await events_of(pg_sessions, "bob")} == {other}


async def test_a_classification_that_fails_for_good_is_a_failed_event(
    client: httpx.AsyncClient,
    pg_sessions: Sessions,
    make_settings: MakeSettings,
    make_token: MakeToken,
    tmp_path: Path,
) -> None:
    doc_id = await upload(client, make_token("alice"))
    refusing = FlakyClassifier(None, error=lambda: ClassifierFailed("refused"))
    settings = make_settings()
    async with running_worker(pg_sessions, LocalStorage(tmp_path / "storage"), refusing, settings):
        await wait_for(lambda: get_document(pg_sessions, doc_id), lambda d: d.status == "failed")
    events = await events_of(pg_sessions, "alice")
    statuses = [e.data["status"] for e in events]
    # One `processing` per attempt (the upload allows five), then `failed`.
    assert statuses == ["queued", *["processing"] * 5, "failed"]
    assert events[-1].data["error"]["code"] == "CLASSIFICATION_FAILED"
    DocumentOut.model_validate(events[-1].data)


async def test_the_janitor_forgets_events_past_retention(
    client: httpx.AsyncClient, pg_sessions: Sessions, pg_clean: AsyncEngine, make_token: MakeToken
) -> None:
    await upload(client, make_token("alice"))
    assert await purge_old_events(pg_clean, retention_s=3600) == 0
    assert len(await events_of(pg_sessions, "alice")) == 1
    assert await purge_old_events(pg_clean, retention_s=0.000001) == 1
    assert await events_of(pg_sessions, "alice") == []


async def test_an_owners_event_ids_become_visible_in_order_and_other_owners_never_wait(
    pg_clean: AsyncEngine,
) -> None:
    first = await pg_clean.connect()
    await first.begin()
    try:
        await record_events(first, [DocumentChange.deleted("alice", "doc_first")])

        async def record(owner: str, doc_id: str) -> None:
            async with pg_clean.begin() as conn:
                await record_events(conn, [DocumentChange.deleted(owner, doc_id)])

        second = asyncio.create_task(record("alice", "doc_second"))
        # Another owner's change commits at once; alice's next one waits for the first's commit,
        # so it cannot become visible (with its larger id) before the first.
        await asyncio.wait_for(record("bob", "doc_of_bob"), 5)
        await asyncio.sleep(0.3)
        assert not second.done()
        await first.commit()
        await asyncio.wait_for(second, 5)
    finally:
        await first.close()
    async with pg_clean.connect() as conn:
        rows = (
            await conn.execute(
                select(DocumentEvent.doc_id)
                .where(DocumentEvent.owner == "alice")
                .order_by(DocumentEvent.id)
            )
        ).scalars()
        assert list(rows) == ["doc_first", "doc_second"]

"""The pipeline's recording as a door calls it: a stored, checked file becomes document and job."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.documents.conftest import count_rows, pdf_bytes
from tests.samples import PDF
from upload_service.db.models import Document, Job, new_doc_id
from upload_service.documents.pipeline.checks import CheckedFile
from upload_service.documents.pipeline.recording import (
    StoredFile,
    find_idempotency_key,
    record_stored,
    replay,
)
from upload_service.errors import IdempotencyConflict
from upload_service.storage.keys import raw_key
from upload_service.storage.local import LocalStorage


async def stored_file(
    storage: LocalStorage, content: bytes, doc_id: str | None = None
) -> StoredFile:
    """Store `content` under a key of its own, as a door does before it records."""
    fresh = new_doc_id()
    key = raw_key(fresh, ".pdf")
    writer = await storage.open_writer(key, "application/octet-stream")
    await writer.write(content)
    await writer.commit()
    checked = CheckedFile("invoice.pdf", PDF, len(content), hashlib.sha256(content).hexdigest())
    return StoredFile(doc_id or fresh, key, checked)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


async def test_a_stored_file_is_recorded_as_one_document_and_one_job(
    make_settings: MakeSettings,
    pg_sessions: async_sessionmaker[AsyncSession],
    pg_clean: AsyncEngine,
    storage: LocalStorage,
) -> None:
    stored = await stored_file(storage, pdf_bytes("Invoice 42"))

    result = await record_stored(
        pg_sessions, storage, stored, owner="alice", idempotency_key=None, settings=make_settings()
    )

    assert not result.replayed
    assert (result.document.id, result.document.sha256) == (stored.doc_id, stored.file.sha256)
    async with pg_sessions() as session:
        job = await session.scalar(select(Job).where(Job.doc_id == stored.doc_id))
    assert job is not None
    assert job.kind == "classify"
    assert await count_rows(pg_clean, Document) == 1
    assert await count_rows(pg_clean, Job) == 1
    assert await storage.exists(stored.key)


async def test_a_recording_refused_before_its_commit_leaves_no_object(
    make_settings: MakeSettings,
    pg_sessions: async_sessionmaker[AsyncSession],
    pg_clean: AsyncEngine,
    storage: LocalStorage,
) -> None:
    settings = make_settings()
    first = await stored_file(storage, pdf_bytes("first"))
    await record_stored(
        pg_sessions, storage, first, owner="alice", idempotency_key=None, settings=settings
    )
    clash = await stored_file(storage, pdf_bytes("second"), doc_id=first.doc_id)

    with pytest.raises(IntegrityError):
        await record_stored(
            pg_sessions, storage, clash, owner="alice", idempotency_key=None, settings=settings
        )

    assert not await storage.exists(clash.key)
    assert await storage.exists(first.key)
    assert await count_rows(pg_clean, Document) == 1


async def test_a_key_used_again_replays_the_same_bytes_and_refuses_others(
    make_settings: MakeSettings,
    pg_sessions: async_sessionmaker[AsyncSession],
    storage: LocalStorage,
) -> None:
    stored = await stored_file(storage, pdf_bytes("Invoice 42"))
    await record_stored(
        pg_sessions, storage, stored, owner="alice", idempotency_key="k-1", settings=make_settings()
    )

    key = await find_idempotency_key(pg_sessions, "alice", "k-1")
    assert key is not None
    replayed = await replay(pg_sessions, key, stored.file.sha256)
    assert (replayed.replayed, replayed.document.id) == (True, stored.doc_id)
    with pytest.raises(IdempotencyConflict):
        await replay(pg_sessions, key, hashlib.sha256(b"other bytes").hexdigest())
    assert await find_idempotency_key(pg_sessions, "bob", "k-1") is None

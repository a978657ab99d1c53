"""Two hands on one direct upload: a cancel while a `complete` holds it, and a `complete` whose
upload the janitor expired meanwhile; neither records a document it should not."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.documents.conftest import count_rows, pdf_bytes
from tests.integration.documents.direct.conftest import DirectBench
from upload_service.db.models import DirectUpload, Document, new_doc_id, utcnow
from upload_service.documents.doors.direct.rows import mark_completed
from upload_service.documents.pipeline.checks import CheckedFile
from upload_service.documents.pipeline.recording import StoredFile, record_stored
from upload_service.errors import DirectUploadGone
from upload_service.storage.keys import raw_key
from upload_service.storage.local import LocalStorage


async def test_cancel_while_a_complete_holds_the_upload_is_423(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Held")
    declared = (await bench.declare("held.pdf", content)).json()
    await bench.post_file(declared, content)
    async with pg_clean.begin() as conn:
        await conn.execute(
            update(DirectUpload)
            .where(DirectUpload.id == declared["upload_id"])
            .values(state="completing", lease_until=utcnow() + timedelta(minutes=5))
        )
    busy = await bench.api.delete(
        f"/v1/uploads/direct/{declared['upload_id']}", headers=bench.headers
    )
    assert busy.status_code == 423
    assert busy.json()["error_code"] == "UPLOAD_LOCKED"
    assert (await bench.complete(declared["upload_id"])).status_code == 423
    assert bench.keys() == [declared["key"]]  # Nothing removed under the holder's feet.


async def test_recording_an_upload_expired_meanwhile_rolls_back_and_leaves_no_object(
    pg_sessions: async_sessionmaker[AsyncSession],
    pg_clean: AsyncEngine,
    make_settings: MakeSettings,
    tmp_path: Path,
) -> None:
    storage = LocalStorage(tmp_path / "storage")
    doc_id = new_doc_id()
    async with pg_sessions() as session:
        session.add(
            DirectUpload(
                id="dup_01HN3K8V2NKDQ7HTXJFR9CPWK0",
                owner="user-a",
                doc_id=doc_id,
                filename="a.pdf",
                content_type="application/pdf",
                size_bytes=5,
                storage_key="staging/x/dup_01HN3K8V2NKDQ7HTXJFR9CPWK0",
                part_size=5,
                part_count=1,
                state="expired",  # The janitor got there first.
                expires_at=utcnow(),
            )
        )
        await session.commit()
    key = raw_key(doc_id, ".pdf")
    writer = await storage.open_writer(key, "application/octet-stream")
    await writer.write(b"%PDF-")
    await writer.commit()

    with pytest.raises(DirectUploadGone):
        await record_stored(
            pg_sessions,
            storage,
            StoredFile(doc_id, key, CheckedFile("a.pdf", "application/pdf", 5, "0" * 64)),
            owner="user-a",
            idempotency_key=None,
            settings=make_settings(),
            also=mark_completed("dup_01HN3K8V2NKDQ7HTXJFR9CPWK0"),
        )
    assert await count_rows(pg_clean, Document) == 0
    assert not await storage.exists(key)

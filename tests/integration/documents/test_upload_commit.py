"""A document with a row always has its bytes: an upload whose COMMIT outcome is unknown keeps its
object, and the janitor removes it later only if the row never came to be."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, running_app
from tests.fixtures.network import TcpProxy
from tests.fixtures.postgres import through
from tests.integration.documents.conftest import MULTIPART, count_rows, multipart, pdf_bytes
from upload_service.db.models import Document, Job
from upload_service.documents.doors.multipart import UploadRequest, upload_document
from upload_service.jobs.janitor import remove_orphans
from upload_service.jobs.queue import utc_now
from upload_service.main import create_app
from upload_service.storage.local import LocalStorage


def stored_objects(root: Path) -> list[Path]:
    return [path for path in (root / "raw").rglob("*") if path.is_file()]


async def test_a_commit_whose_answer_is_lost_keeps_the_document_and_its_bytes(
    make_settings: MakeSettings,
    db_proxy: TcpProxy,
    pg_url: str,
    pg_clean: AsyncEngine,
    auth_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    content = pdf_bytes("lost answer")
    app = create_app(make_settings(database_url=through(db_proxy, pg_url)))
    async with running_app(app) as client:
        # The server receives the COMMIT; the connection dies before its answer comes back.
        db_proxy.cut_at(b"COMMIT", forward=True)
        response = await client.post(
            "/v1/documents", files={"file": ("a.pdf", content)}, headers=auth_headers
        )
        assert db_proxy.cuts == 1
        # Either the service saw the row once reconnected (202), or it could not tell (503).
        assert response.status_code in (202, 503), response.text
        assert await count_rows(pg_clean, Document) == 1
        assert await count_rows(pg_clean, Job) == 1
        listed = await client.get("/v1/documents", headers=auth_headers)
        [document] = listed.json()["items"]
        if response.status_code == 202:
            assert response.json()["doc_id"] == document["doc_id"]
        download = await client.get(
            f"/v1/documents/{document['doc_id']}/content", headers=auth_headers
        )
        assert download.status_code == 200
        assert download.content == content


async def test_a_commit_lost_on_its_way_keeps_the_object_for_the_janitor_to_remove(
    make_settings: MakeSettings,
    db_proxy: TcpProxy,
    pg_url: str,
    pg_clean: AsyncEngine,
    auth_headers: dict[str, str],
    tmp_path: Path,
) -> None:
    root = tmp_path / "storage"
    app = create_app(make_settings(database_url=through(db_proxy, pg_url)))
    async with running_app(app) as client:
        # The COMMIT never reaches the server: the transaction rolls back, but the service
        # cannot know that it did.
        db_proxy.cut_at(b"COMMIT", forward=False)
        response = await client.post(
            "/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=auth_headers
        )
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"]
    assert await count_rows(pg_clean, Document) == 0
    assert len(stored_objects(root)) == 1  # Kept: deleting it would be wrong had it committed.

    sweep = await remove_orphans(
        pg_clean,
        LocalStorage(root),
        older_than=timedelta(hours=1),
        settle_s=0.1,
        now=utc_now() + timedelta(hours=2),
    )
    assert sweep.removed == 1
    assert stored_objects(root) == []


class CommitWaitsForALatch(AsyncSession):
    """A session whose COMMIT is held until the test lets it go, as a slow network would."""

    reached: asyncio.Event
    latch: asyncio.Event

    async def commit(self) -> None:
        self.reached.set()
        await self.latch.wait()
        await super().commit()


async def test_a_request_cancelled_while_its_commit_is_in_flight_keeps_document_and_bytes(
    make_settings: MakeSettings, pg_clean: AsyncEngine, tmp_path: Path
) -> None:
    CommitWaitsForALatch.reached = asyncio.Event()
    CommitWaitsForALatch.latch = asyncio.Event()
    sessions = async_sessionmaker(pg_clean, class_=CommitWaitsForALatch, expire_on_commit=False)
    storage = LocalStorage(tmp_path / "storage")
    content = multipart(("file", "a.pdf", pdf_bytes()))

    async def body() -> AsyncIterator[bytes]:
        yield content

    upload = asyncio.create_task(
        upload_document(
            UploadRequest("user-a", MULTIPART, len(content), None),
            body(),
            sessions=sessions,
            storage=storage,
            settings=make_settings(),
        )
    )
    await asyncio.wait_for(CommitWaitsForALatch.reached.wait(), 10)
    upload.cancel()  # The client went away (or the server is stopping) mid-COMMIT.
    await asyncio.wait({upload}, timeout=10)
    assert upload.cancelled()
    CommitWaitsForALatch.latch.set()

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and await count_rows(pg_clean, Document) == 0:
        await asyncio.sleep(0.05)
    assert await count_rows(pg_clean, Document) == 1
    assert len(stored_objects(tmp_path / "storage")) == 1
    await storage.aclose()

"""The processing API: (re)queue a classification, read a task, and the internal routes."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.jobs.support import StoredDocument, get_document, store_document
from upload_service.config import Settings
from upload_service.db.models import Document, Job
from upload_service.main import create_app
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


def build_app(settings: Settings) -> FastAPI:
    """The app as `main` builds it."""
    return create_app(settings)


@pytest.fixture
def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(settings)) as client:
        yield client


@pytest.fixture
def headers(make_token: MakeToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('user-a')}"}


@pytest.fixture
def other_headers(make_token: MakeToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('user-b')}"}


@pytest.fixture
def internal_headers(make_token: MakeToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('ops-service', scopes=['internal'])}"}


@pytest.fixture
async def document(pg_sessions: Sessions, settings: Settings) -> StoredDocument:
    """A document of user-a that has been classified (its task succeeded)."""
    storage = LocalStorage(settings.local_storage_dir)
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", owner="user-a")
    async with pg_sessions.begin() as session:
        await session.execute(
            update(Job).where(Job.id == item.task_id).values(status="succeeded", attempts=1)
        )
    return item


async def _classify_jobs(sessions: Sessions, doc_id: str) -> int:
    async with sessions() as session:
        query = select(func.count()).where(Job.doc_id == doc_id, Job.kind == "classify")
        return int(await session.scalar(query) or 0)


async def test_process_queues_a_task_and_returns_the_active_one_after(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    document: StoredDocument,
    pg_sessions: Sessions,
) -> None:
    first = await api.post(f"/v1/documents/{document.doc_id}/process", headers=headers)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["doc_id"] == document.doc_id
    assert body["status"] == "queued"
    assert re.fullmatch(r"task_[0-9A-Z]{26}", body["task_id"])
    assert body["task_id"] != document.task_id
    assert first.headers["location"] == f"/v1/tasks/{body['task_id']}"
    assert (await get_document(pg_sessions, document.doc_id)).status == "queued"

    second = await api.post(f"/v1/documents/{document.doc_id}/process", headers=headers)
    assert second.status_code == 202
    assert second.json()["task_id"] == body["task_id"]
    assert await _classify_jobs(pg_sessions, document.doc_id) == 2  # the upload's + this one


async def test_concurrent_process_requests_queue_one_task(
    api: httpx.AsyncClient,
    headers: dict[str, str],
    document: StoredDocument,
    pg_sessions: Sessions,
) -> None:
    url = f"/v1/documents/{document.doc_id}/process"
    responses = await asyncio.gather(*(api.post(url, headers=headers) for _ in range(6)))
    assert {response.status_code for response in responses} == {202}
    assert len({response.json()["task_id"] for response in responses}) == 1
    assert await _classify_jobs(pg_sessions, document.doc_id) == 2


async def test_get_task_shows_where_it_stands(
    api: httpx.AsyncClient, headers: dict[str, str], document: StoredDocument
) -> None:
    response = await api.get(f"/v1/tasks/{document.task_id}", headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "task_id": document.task_id,
        "doc_id": document.doc_id,
        "kind": "classify",
        "status": "succeeded",
        "attempts": 1,
        "last_error": None,
        "created_at": body["created_at"],
        "updated_at": body["updated_at"],
    }
    assert TIMESTAMP.fullmatch(body["created_at"])
    assert TIMESTAMP.fullmatch(body["updated_at"])


async def test_another_users_document_and_task_are_not_found(
    api: httpx.AsyncClient, other_headers: dict[str, str], document: StoredDocument
) -> None:
    process = await api.post(f"/v1/documents/{document.doc_id}/process", headers=other_headers)
    assert process.status_code == 404
    assert process.json()["error_code"] == "DOCUMENT_NOT_FOUND"
    task = await api.get(f"/v1/tasks/{document.task_id}", headers=other_headers)
    assert task.status_code == 404
    assert task.json()["error_code"] == "TASK_NOT_FOUND"
    unknown = await api.post("/v1/documents/doc_nope/process", headers=other_headers)
    assert unknown.status_code == 404


async def test_processing_routes_need_a_token(
    api: httpx.AsyncClient, document: StoredDocument
) -> None:
    assert (await api.post(f"/v1/documents/{document.doc_id}/process")).status_code == 401
    assert (await api.get(f"/v1/tasks/{document.task_id}")).status_code == 401


async def test_internal_routes_need_the_internal_scope(
    api: httpx.AsyncClient, headers: dict[str, str], document: StoredDocument
) -> None:
    for action in ("reprocess", "reset"):
        response = await api.post(
            f"/internal/documents/{document.doc_id}/{action}", headers=headers
        )
        assert response.status_code == 403
        assert response.json()["error_code"] == "FORBIDDEN"


async def test_reprocess_works_on_any_owners_document(
    api: httpx.AsyncClient,
    internal_headers: dict[str, str],
    headers: dict[str, str],
    document: StoredDocument,
) -> None:
    response = await api.post(
        f"/internal/documents/{document.doc_id}/reprocess", headers=internal_headers
    )
    assert response.status_code == 202, response.text
    task = response.json()
    assert (task["doc_id"], task["kind"], task["status"]) == (document.doc_id, "classify", "queued")
    # The owner sees the same task, and gets it back instead of a second one.
    again = await api.post(f"/v1/documents/{document.doc_id}/process", headers=headers)
    assert again.json()["task_id"] == task["task_id"]
    missing = await api.post("/internal/documents/doc_nope/reprocess", headers=internal_headers)
    assert missing.status_code == 404


async def test_reset_clears_the_results_and_queues_a_task(
    api: httpx.AsyncClient,
    internal_headers: dict[str, str],
    document: StoredDocument,
    pg_sessions: Sessions,
) -> None:
    async with pg_sessions.begin() as session:
        await session.execute(
            update(Document)
            .where(Document.id == document.doc_id)
            .values(
                status="failed",
                error={"code": "CLASSIFICATION_FAILED", "message": "x"},
            )
        )
    response = await api.post(
        f"/internal/documents/{document.doc_id}/reset", headers=internal_headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["doc_id"] == document.doc_id
    assert (body["status"], body["classification"], body["error"]) == ("queued", None, None)
    assert await _classify_jobs(pg_sessions, document.doc_id) == 2
    stored = await get_document(pg_sessions, document.doc_id)
    assert (stored.status, stored.error) == ("queued", None)


async def test_internal_routes_are_absent_from_the_public_openapi(
    api: httpx.AsyncClient,
) -> None:
    spec = (await api.get("/openapi.json")).json()
    assert not [path for path in spec["paths"] if path.startswith("/internal")]
    assert spec["paths"]["/v1/documents/{doc_id}/process"]["post"]["operationId"] == (
        "process_document"
    )
    assert spec["paths"]["/v1/tasks/{task_id}"]["get"]["operationId"] == "get_task"
    assert "examples" in spec["components"]["schemas"]["TaskOut"]

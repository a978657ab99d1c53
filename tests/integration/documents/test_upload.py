"""POST /v1/documents: streamed to storage, recorded with its job, or nothing is left behind."""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, running_app
from tests.integration.documents.conftest import (
    JPEG,
    MULTIPART,
    PNG,
    count_rows,
    docx_bytes,
    multipart,
    pdf_bytes,
)
from upload_service.db.models import Document, IdempotencyKey, Job
from upload_service.jobs.queue import utc_now
from upload_service.main import create_app


def stored_files(root: Path) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file()] if root.exists() else []


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


async def test_upload_is_accepted_stored_and_queued(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes()
    response = await client.post(
        "/v1/documents",
        files={"file": ("../../etc/invoice 2024.pdf", content, "application/pdf")},
        headers=auth_headers,
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert re.fullmatch(r"doc_[0-9A-HJKMNP-TV-Z]{26}", body["doc_id"])
    assert response.headers["location"] == f"/v1/documents/{body['doc_id']}"
    assert body["status"] == "queued"
    assert body["filename"] == "invoice 2024.pdf"
    assert body["content_type"] == "application/pdf"
    assert body["size_bytes"] == len(content)
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["storage_key"] == f"raw/{body['doc_id']}.pdf"
    assert body["created_at"].endswith("Z")
    assert body["classification"] is None
    assert body["error"] is None
    assert [p.read_bytes() for p in stored_files(storage_root)] == [content]
    async with pg_clean.connect() as conn:
        jobs = (await conn.execute(select(Job.kind, Job.doc_id, Job.status))).all()
    assert [tuple(job) for job in jobs] == [("classify", body["doc_id"], "queued")]


@pytest.mark.parametrize(
    ("filename", "content", "content_type"),
    [
        ("scan.png", PNG, "image/png"),
        ("photo.jpg", JPEG, "image/jpeg"),
        ("photo.JPEG", JPEG, "image/jpeg"),
        (
            "letter.docx",
            docx_bytes(),
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        ),
    ],
)
async def test_content_type_is_what_the_bytes_are(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    filename: str,
    content: bytes,
    content_type: str,
) -> None:
    response = await client.post(
        "/v1/documents", files={"file": (filename, content, "text/plain")}, headers=auth_headers
    )
    assert response.status_code == 202, response.text
    assert response.json()["content_type"] == content_type


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("program.exe", b"MZ\x90\x00"),
        ("fake.png", pdf_bytes()),
        ("fake.pdf", PNG),
        ("fake.docx", b"PK\x03\x04" + b"\x00" * 100),
        ("noext", pdf_bytes()),
    ],
)
async def test_unsupported_or_mismatched_type_is_422_and_leaves_nothing(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
    filename: str,
    content: bytes,
) -> None:
    response = await client.post(
        "/v1/documents", files={"file": (filename, content)}, headers=auth_headers
    )
    assert response.status_code == 422, response.text
    assert response.json()["error_code"] == "UNSUPPORTED_FILE_TYPE"
    assert ".pdf" in response.json()["details"]["allowed"]
    assert stored_files(storage_root) == []
    assert await count_rows(pg_clean, Document) == 0


async def test_empty_file_is_422(
    client: httpx.AsyncClient, auth_headers: dict[str, str], storage_root: Path
) -> None:
    response = await client.post(
        "/v1/documents", files={"file": ("empty.pdf", b"")}, headers=auth_headers
    )
    assert response.status_code == 422
    assert response.json()["error_code"] == "EMPTY_FILE"
    assert stored_files(storage_root) == []


async def test_declared_oversize_is_413_before_the_body_is_read(
    make_settings: MakeSettings, auth_headers: dict[str, str]
) -> None:
    app = create_app(make_settings(max_file_size_mb=1))
    received = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal received
        for _ in range(40):
            received += 65536
            yield b"x" * 65536

    async with running_app(app) as client:
        response = await client.post(
            "/v1/documents",
            content=body(),
            headers={
                **auth_headers,
                "Content-Type": MULTIPART,
                "Content-Length": str(40 * 65536),
            },
        )
    assert response.status_code == 413
    assert response.json()["error_code"] == "FILE_TOO_LARGE"
    assert response.json()["details"] == {"max_bytes": 1024 * 1024}
    assert received <= 65536  # httpx primes the first chunk; the server read none of it.


async def test_streamed_oversize_is_cut_off_with_413_and_leaves_nothing(
    make_settings: MakeSettings,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    app = create_app(make_settings(max_file_size_mb=1))
    payload = multipart(("file", "big.pdf", pdf_bytes(pad=2 * 1024 * 1024)))

    async def chunked() -> AsyncIterator[bytes]:  # No Content-Length: chunked transfer.
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    async with running_app(app) as client:
        response = await client.post(
            "/v1/documents",
            content=chunked(),
            headers={**auth_headers, "Content-Type": MULTIPART},
        )
    assert response.status_code == 413
    assert response.json()["error_code"] == "FILE_TOO_LARGE"
    assert stored_files(storage_root) == []
    assert await count_rows(pg_clean, Document) == 0


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        pytest.param("application/json", b'{"file": 1}', id="not-multipart"),
        pytest.param(
            "multipart/form-data", multipart(("file", "a.pdf", b"%PDF-")), id="no-boundary"
        ),
        pytest.param(MULTIPART, multipart(("other", None, b"x")), id="no-file-part"),
        pytest.param(MULTIPART, multipart(("file", None, b"%PDF-1.4")), id="file-without-filename"),
        pytest.param(
            MULTIPART,
            multipart(("file", "a.pdf", pdf_bytes()), ("file2", "b.pdf", pdf_bytes())),
            id="two-files",
        ),
        pytest.param(
            MULTIPART, multipart(("file", "a.pdf", pdf_bytes()), close=False), id="early-end"
        ),
        pytest.param(
            MULTIPART,
            b"--"
            + MULTIPART.split("=")[1].encode()
            + b"\r\nX-Huge: "
            + b"a" * 100_000
            + b"\r\n\r\n",
            id="absurd-header",
        ),
    ],
)
async def test_malformed_multipart_is_400(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
    content_type: str,
    body: bytes,
) -> None:
    response = await client.post(
        "/v1/documents", content=body, headers={**auth_headers, "Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error_code"] == "MALFORMED_UPLOAD"
    assert stored_files(storage_root) == []
    assert await count_rows(pg_clean, Document) == 0


async def test_idempotent_replay_returns_the_first_document(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    headers = {**auth_headers, "Idempotency-Key": "order-1"}
    files = {"file": ("a.pdf", pdf_bytes())}
    first = await client.post("/v1/documents", files=files, headers=headers)
    again = await client.post("/v1/documents", files=files, headers=headers)
    assert first.status_code == again.status_code == 202
    assert again.json()["doc_id"] == first.json()["doc_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await count_rows(pg_clean, Document) == 1
    assert len(stored_files(storage_root)) == 1


async def test_an_idempotency_key_older_than_24_hours_is_forgotten(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    headers = {**auth_headers, "Idempotency-Key": "order-old"}
    files = {"file": ("a.pdf", pdf_bytes())}
    first = await client.post("/v1/documents", files=files, headers=headers)
    async with pg_clean.begin() as conn:
        await conn.execute(
            update(IdempotencyKey).values(created_at=utc_now() - timedelta(hours=24, minutes=1))
        )

    again = await client.post("/v1/documents", files=files, headers=headers)
    assert again.status_code == 202, again.text
    assert again.json()["doc_id"] != first.json()["doc_id"]
    assert "idempotent-replayed" not in again.headers
    # The key now remembers the new document, for the next 24 hours.
    replay = await client.post("/v1/documents", files=files, headers=headers)
    assert replay.json()["doc_id"] == again.json()["doc_id"]
    assert replay.headers["idempotent-replayed"] == "true"
    assert await count_rows(pg_clean, Document) == 2


async def test_idempotency_key_with_other_bytes_is_409(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    headers = {**auth_headers, "Idempotency-Key": "order-2"}
    first = await client.post(
        "/v1/documents", files={"file": ("a.pdf", pdf_bytes("one"))}, headers=headers
    )
    other = await client.post(
        "/v1/documents", files={"file": ("a.pdf", pdf_bytes("two"))}, headers=headers
    )
    assert first.status_code == 202
    assert other.status_code == 409
    assert other.json()["error_code"] == "IDEMPOTENCY_CONFLICT"
    assert await count_rows(pg_clean, Document) == 1


async def test_same_key_from_another_user_is_independent(
    client: httpx.AsyncClient,
    make_token,
    pg_clean: AsyncEngine,  # type: ignore[no-untyped-def]
) -> None:
    files = {"file": ("a.pdf", pdf_bytes())}
    for user in ("user-a", "user-b"):
        headers = {"Authorization": f"Bearer {make_token(user)}", "Idempotency-Key": "k"}
        assert (await client.post("/v1/documents", files=files, headers=headers)).status_code == 202
    assert await count_rows(pg_clean, Document) == 2


async def test_ten_concurrent_identical_requests_create_one_document(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    headers = {**auth_headers, "Idempotency-Key": "burst"}
    content = pdf_bytes(pad=512 * 1024)
    responses = await asyncio.gather(
        *(
            client.post("/v1/documents", files={"file": ("a.pdf", content)}, headers=headers)
            for _ in range(10)
        )
    )
    assert {r.status_code for r in responses} == {202}, [r.text for r in responses]
    assert len({r.json()["doc_id"] for r in responses}) == 1
    assert await count_rows(pg_clean, Document) == 1
    assert await count_rows(pg_clean, Job) == 1
    assert len(stored_files(storage_root)) == 1
    async with pg_clean.connect() as conn:
        keys = (await conn.execute(select(IdempotencyKey.key))).scalars().all()
    assert keys == ["burst"]


async def test_bad_idempotency_key_is_422(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/documents",
        files={"file": ("a.pdf", pdf_bytes())},
        headers={**auth_headers, "Idempotency-Key": "has space"},
    )
    assert response.status_code == 422
    assert response.json()["error_code"] == "VALIDATION_ERROR"

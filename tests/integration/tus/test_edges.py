"""tus from a browser (CORS) and on the embedded default (SQLite), and in the public document."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.app import MakeSettings, running_app
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.security.conftest import assert_envelope
from tests.integration.tus.conftest import OFFSET_STREAM, TUS, create_upload, head, patch
from upload_service.main import create_app

ALLOWED = "https://app.example.com"
TUS_REQUEST_HEADERS = {
    "authorization",
    "content-type",
    "upload-length",
    "upload-offset",
    "upload-metadata",
    "upload-checksum",
    "tus-resumable",
    "upload-defer-length",
    "upload-concat",
    "x-http-method-override",
    "x-requested-with",
    "idempotency-key",
}
TUS_EXPOSED = {
    "location",
    "upload-offset",
    "upload-length",
    "upload-metadata",
    "upload-expires",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
    "document-location",
}


def header_set(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.fixture
async def cors(make_settings: MakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(create_app(make_settings(cors_allow_origins=[ALLOWED]))) as client:
        yield client


async def test_a_preflight_for_a_tus_patch_is_allowed_without_a_token(
    cors: httpx.AsyncClient,
) -> None:
    response = await cors.options(
        "/v1/uploads/tus/some-id",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "tus-resumable, upload-offset, content-type",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert header_set(response.headers["access-control-allow-headers"]) >= TUS_REQUEST_HEADERS
    assert header_set(response.headers["access-control-allow-methods"]) >= {
        "post",
        "get",
        "head",
        "patch",
        "delete",
        "options",
    }


async def test_tus_answers_to_an_allowed_origin_expose_the_tus_headers(
    cors: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: object
) -> None:
    created = await cors.post(
        "/v1/uploads/tus",
        headers={
            **auth_headers,
            **TUS,
            "Origin": ALLOWED,
            "Upload-Length": "100",
            "Upload-Metadata": "filename YS5wZGY=",
        },
    )
    assert created.status_code == 201
    refused = await cors.post("/v1/uploads/tus", headers={"Origin": ALLOWED})  # No token.
    for response in (created, refused):
        assert response.headers["access-control-allow-origin"] == ALLOWED
        assert header_set(response.headers["access-control-expose-headers"]) >= TUS_EXPOSED


async def test_options_to_an_allowed_origin_is_the_tus_answer_with_cors(
    cors: httpx.AsyncClient,
) -> None:
    # Not a preflight (no Access-Control-Request-Method): tus discovery from a page.
    response = await cors.options("/v1/uploads/tus", headers={"Origin": ALLOWED})
    assert response.status_code == 204
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["access-control-allow-origin"] == ALLOWED


@pytest.fixture
async def embedded(make_settings: MakeSettings, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(database_url=f"sqlite+aiosqlite:///{tmp_path / 'embedded.db'}")
    async with running_app(create_app(settings)) as client:
        yield client


async def test_tus_works_on_the_embedded_sqlite_database(
    embedded: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    content = pdf_bytes(pad=200_000)
    location = await create_upload(embedded, auth_headers, len(content))
    first = await patch(embedded, auth_headers, location, 0, content[:100_000])
    assert first.status_code == 204, first.text
    assert_envelope(
        await patch(embedded, auth_headers, location, 0, content[:10]), 409, "OFFSET_MISMATCH"
    )
    status = await head(embedded, auth_headers, location)
    assert status.headers["upload-offset"] == "100000"
    last = await patch(embedded, auth_headers, location, 100_000, content[100_000:])
    assert last.status_code == 204, last.text
    document = (await embedded.get(last.headers["document-location"], headers=auth_headers)).json()
    assert document["sha256"] == hashlib.sha256(content).hexdigest()


async def test_a_second_patch_on_sqlite_is_423_too(
    embedded: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    content = pdf_bytes(pad=20_000)
    location = await create_upload(embedded, auth_headers, len(content))
    started, go_on = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield content[:5000]
        started.set()
        await asyncio.wait_for(go_on.wait(), 10)

    first = asyncio.create_task(
        embedded.patch(
            location,
            content=slow_body(),
            headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
        )
    )
    await asyncio.wait_for(started.wait(), 10)
    second = await patch(embedded, auth_headers, location, 0, content[:10])
    assert_envelope(second, 423, "UPLOAD_LOCKED")
    go_on.set()
    assert (await asyncio.wait_for(first, 10)).headers["upload-offset"] == "5000"


async def test_the_tus_operations_are_in_the_public_document(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operations = {
        (method, path): operation
        for path, methods in document["paths"].items()
        for method, operation in methods.items()
    }
    expected = {
        ("post", "/v1/uploads/tus"): "tus_create_upload",
        ("head", "/v1/uploads/tus/{upload_id}"): "tus_get_upload",
        ("patch", "/v1/uploads/tus/{upload_id}"): "tus_append",
        ("delete", "/v1/uploads/tus/{upload_id}"): "tus_terminate_upload",
    }
    for key, operation_id in expected.items():
        operation = operations[key]
        assert operation["operationId"] == operation_id
        assert operation["security"] == [{"BearerAuth": []}]
        params = {p["name"] for p in operation.get("parameters", ()) if p["in"] == "header"}
        assert "Tus-Resumable" in params
        assert {"401", "429", "500"} <= set(operation["responses"])
    assert ("options", "/v1/uploads/tus") not in operations  # Public and protocol-only.

"""Creation and the protocol's edge: OPTIONS, POST, 412, 401 before the body, caps and limits."""

from __future__ import annotations

import base64
import re
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.security.conftest import assert_envelope, assert_unauthenticated, bearer
from tests.integration.security.test_body_limits import CountingBody
from tests.integration.tus.conftest import (
    OFFSET_STREAM,
    TUS,
    count,
    create_upload,
    head,
    metadata,
)
from upload_service.db.models import Document, Upload, utcnow
from upload_service.main import create_app

TUS_PATH = "/v1/uploads/tus"


def partial_files(storage_root: Path) -> list[Path]:
    partial = storage_root / ".partial"
    return [p for p in partial.rglob("*") if p.is_file()] if partial.exists() else []


async def test_options_needs_no_token_and_says_what_the_server_speaks(
    client: httpx.AsyncClient,
) -> None:
    response = await client.options(TUS_PATH)
    assert response.status_code == 204, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert set(response.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    }
    assert response.headers["tus-max-size"] == str(50 * 1024 * 1024)
    assert response.headers["tus-checksum-algorithm"] == "sha1,sha256"


async def test_creation_answers_201_with_a_relative_location_and_an_expiry(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    before = utcnow()
    response = await client.post(
        TUS_PATH,
        headers={
            **auth_headers,
            **TUS,
            "Upload-Length": "1000",
            "Upload-Metadata": metadata(filename="../../etc/q3 report.pdf"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["tus-resumable"] == "1.0.0"
    upload_id = response.headers["location"].removeprefix(f"{TUS_PATH}/")
    # At least 128 random bits, URL-safe.
    assert re.fullmatch(r"[A-Za-z0-9_-]{22,}", upload_id)
    expires = parsedate_to_datetime(response.headers["upload-expires"])
    assert before + timedelta(hours=23) < expires <= utcnow() + timedelta(days=1)
    assert response.headers["upload-expires"].endswith(" GMT")
    assert "upload-offset" not in response.headers  # No body, nothing appended.


async def test_ids_are_never_reused(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    locations = {await create_upload(client, auth_headers, 10) for _ in range(5)}
    assert len(locations) == 5


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 400, "MALFORMED_UPLOAD"),  # No Upload-Length.
        ({"Upload-Defer-Length": "1"}, 400, "MALFORMED_UPLOAD"),
        ({"Upload-Length": "-3"}, 400, "MALFORMED_UPLOAD"),
        ({"Upload-Length": str(50 * 1024 * 1024 + 1)}, 413, "FILE_TOO_LARGE"),
        ({"Upload-Length": "0"}, 422, "EMPTY_FILE"),
        (
            {"Upload-Length": "10", "Upload-Metadata": metadata(filename="tool.exe")},
            422,
            "UNSUPPORTED_FILE_TYPE",
        ),
        ({"Upload-Length": "10", "Upload-Metadata": "filename"}, 422, "UNSUPPORTED_FILE_TYPE"),
        ({"Upload-Length": "10", "Upload-Metadata": "filename @@@"}, 400, "MALFORMED_UPLOAD"),
        (
            {"Upload-Length": "10", "Upload-Metadata": "x " + "QUFB" * 1100},
            400,
            "MALFORMED_UPLOAD",
        ),
    ],
)
async def test_a_creation_that_cannot_do_is_refused_before_anything_is_stored(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    tmp_path: Path,
    headers: dict[str, str],
    status: int,
    code: str,
) -> None:
    defaults = {"Upload-Metadata": metadata(filename="a.pdf")}
    response = await client.post(TUS_PATH, headers={**auth_headers, **TUS, **defaults, **headers})
    body = assert_envelope(response, status, code)
    assert response.headers["tus-resumable"] == "1.0.0"
    if code == "FILE_TOO_LARGE":
        assert body["details"] == {"max_bytes": 50 * 1024 * 1024}
    assert await count(pg_clean, Upload) == 0
    assert partial_files(tmp_path / "storage") == []


@pytest.mark.parametrize("version", [None, "0.2.2", "1.0"])
async def test_a_request_without_tus_1_0_0_is_412_with_the_versions_spoken(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    version: str | None,
) -> None:
    headers = {**auth_headers, "Upload-Length": "10", "Upload-Metadata": metadata(filename="a.pdf")}
    if version is not None:
        headers["Tus-Resumable"] = version
    response = await client.post(TUS_PATH, headers=headers)
    assert_envelope(response, 412, "UNSUPPORTED_TUS_VERSION")
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-resumable"] == "1.0.0"
    assert await count(pg_clean, Upload) == 0


async def test_every_tus_answer_carries_tus_resumable_errors_included(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    unknown = await client.head(f"{TUS_PATH}/nope", headers={**auth_headers, **TUS})
    assert unknown.status_code == 404
    not_allowed = await client.put(f"{TUS_PATH}/nope", headers={**auth_headers, **TUS})
    assert not_allowed.status_code == 405
    tokenless = await client.post(TUS_PATH, headers=TUS)
    assert tokenless.status_code == 401
    for response in (unknown, not_allowed, tokenless):
        assert response.headers["tus-resumable"] == "1.0.0"


@pytest.mark.parametrize("method", ["POST", "PATCH"])
async def test_no_token_is_401_before_a_byte_of_the_body_is_read(
    client: httpx.AsyncClient, method: str
) -> None:
    body = CountingBody(1024 * 1024, chunk=64 * 1024)
    response = await client.request(
        method,
        TUS_PATH if method == "POST" else f"{TUS_PATH}/some-upload",
        content=body,
        headers={
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Length": "1048576",
            "Upload-Offset": "0",
        },
    )
    assert_unauthenticated(response, token_sent=False)
    assert response.headers["tus-resumable"] == "1.0.0"
    assert body.pulled == 0


async def test_a_forged_token_is_401_before_a_byte_of_the_patch_is_read(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody(1024 * 1024, chunk=64 * 1024)
    response = await client.patch(
        f"{TUS_PATH}/some-upload",
        content=body,
        headers={
            **TUS,
            **bearer("forged.token.here"),
            "Content-Type": OFFSET_STREAM,
            "Upload-Offset": "0",
        },
    )
    assert_unauthenticated(response)
    assert body.pulled == 0


async def test_a_user_holds_at_most_the_cap_of_unfinished_uploads(
    make_settings: MakeSettings, make_token: MakeToken, pg_clean: AsyncEngine
) -> None:
    async with running_app(create_app(make_settings(tus_max_open_uploads=2))) as client:
        alice, bob = bearer(make_token("alice")), bearer(make_token("bob"))
        first = await create_upload(client, alice, 100)
        await create_upload(client, alice, 100)
        refused = await client.post(
            TUS_PATH,
            headers={
                **alice,
                **TUS,
                "Upload-Length": "100",
                "Upload-Metadata": metadata(filename="c.pdf"),
            },
        )
        body = assert_envelope(refused, 429, "TOO_MANY_OPEN_UPLOADS")
        assert body["details"] == {"max_open_uploads": 2}
        assert "retry-after" in refused.headers
        await create_upload(client, bob, 100)  # Another user's cap is their own.
        # Terminating one frees its place.
        deleted = await client.delete(first, headers={**alice, **TUS})
        assert deleted.status_code == 204
        await create_upload(client, alice, 100)
    assert await count(pg_clean, Upload) == 4


async def test_creation_counts_against_the_upload_rate_limit(
    make_settings: MakeSettings, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    async with running_app(create_app(make_settings(upload_rate_limit="2/minute"))) as client:
        await create_upload(client, auth_headers, 10)
        await create_upload(client, auth_headers, 10)
        third = await client.post(
            TUS_PATH,
            headers={
                **auth_headers,
                **TUS,
                "Upload-Length": "10",
                "Upload-Metadata": metadata(filename="a.pdf"),
            },
        )
        assert_envelope(third, 429, "RATE_LIMITED")
        assert third.headers["x-ratelimit-limit"] == "2"
        assert third.headers["tus-resumable"] == "1.0.0"


async def test_creation_with_upload_appends_the_body_at_once(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=50_000)
    response = await client.post(
        TUS_PATH,
        content=content[:20_000],
        headers={
            **auth_headers,
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Length": str(len(content)),
            "Upload-Metadata": metadata(filename="a.pdf"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == "20000"
    status = await head(client, auth_headers, response.headers["location"])
    assert status.headers["upload-offset"] == "20000"


async def test_a_whole_file_in_the_creation_makes_the_document_at_once(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes()
    response = await client.post(
        TUS_PATH,
        content=content,
        headers={
            **auth_headers,
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Length": str(len(content)),
            "Upload-Metadata": metadata(filename="whole.pdf"),
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["upload-offset"] == str(len(content))
    document = await client.get(response.headers["document-location"], headers=auth_headers)
    assert document.json()["filename"] == "whole.pdf"
    assert await count(pg_clean, Document) == 1


async def test_a_creation_whose_first_bytes_are_refused_still_says_where_the_upload_is(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes()
    wrong = base64.b64encode(b"\x00" * 20).decode()
    response = await client.post(
        TUS_PATH,
        content=content[:100],
        headers={
            **auth_headers,
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Length": str(len(content)),
            "Upload-Metadata": metadata(filename="a.pdf"),
            "Upload-Checksum": f"sha1 {wrong}",
        },
    )
    assert_envelope(response, 460, "CHECKSUM_MISMATCH")
    status = await head(client, auth_headers, response.headers["location"])
    assert status.headers["upload-offset"] == "0"

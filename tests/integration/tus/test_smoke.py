from __future__ import annotations

import hashlib

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.documents.conftest import pdf_bytes
from tests.integration.tus.conftest import create_upload, head, patch


async def test_create_head_patch_complete(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=300_000)
    location = await create_upload(client, auth_headers, len(content))
    response = await head(client, auth_headers, location)
    assert response.status_code == 200, response.text
    assert response.headers["upload-offset"] == "0"
    first = await patch(client, auth_headers, location, 0, content[:100_000])
    assert first.status_code == 204, first.text
    assert first.headers["upload-offset"] == "100000"
    last = await patch(client, auth_headers, location, 100_000, content[100_000:])
    assert last.status_code == 204, last.text
    document = await client.get(last.headers["document-location"], headers=auth_headers)
    assert document.json()["sha256"] == hashlib.sha256(content).hexdigest()

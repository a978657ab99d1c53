"""Compression: gzip for clients that accept it, untouched answers for the others."""

from __future__ import annotations

import gzip

import httpx
import pytest
from starlette.types import Receive, Scope, Send

from upload_service.middleware.compression import CompressionMiddleware

BIG_JSON = b'{"items": [' + b'"doc_01HN3K8V2NKDQ7HTXJFR9CPWK0",' * 100 + b'"x"]}'


def answering(body: bytes, content_type: bytes = b"application/json"):  # type: ignore[no-untyped-def]
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def get(app: CompressionMiddleware, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/", headers=headers)


@pytest.mark.parametrize("accept", ["gzip", "br, gzip;q=0.5"])
async def test_large_json_is_gzipped_for_clients_that_accept_it(accept: str) -> None:
    response = await get(CompressionMiddleware(answering(BIG_JSON)), **{"Accept-Encoding": accept})
    assert response.headers["content-encoding"] == "gzip"
    assert "Accept-Encoding" in response.headers["vary"]
    assert response.content == BIG_JSON  # httpx decoded it
    assert int(response.headers["content-length"]) < len(BIG_JSON)


async def test_clients_without_gzip_get_the_answer_untouched() -> None:
    response = await get(CompressionMiddleware(answering(BIG_JSON)), **{"Accept-Encoding": ""})
    assert "content-encoding" not in response.headers
    assert response.content == BIG_JSON


async def test_small_and_excluded_answers_are_never_compressed() -> None:
    small = await get(
        CompressionMiddleware(answering(b'{"ok": true}')), **{"Accept-Encoding": "gzip"}
    )
    assert "content-encoding" not in small.headers
    pdf = b"%PDF-1.4" + b"x" * 5000
    download = CompressionMiddleware(
        answering(pdf, b"application/pdf"), exclude_content_types=("application/pdf",)
    )
    response = await get(download, **{"Accept-Encoding": "gzip"})
    assert "content-encoding" not in response.headers
    assert response.content == pdf
    assert gzip.compress(pdf) != response.content

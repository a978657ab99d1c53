"""Request bodies: none is read before its caller is verified, and parsed bodies are bounded.

Each body here is an async generator that counts what the app pulled from it: the app's reads
are observed directly, not guessed from timings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.security.conftest import assert_envelope, assert_unauthenticated, bearer
from upload_service.api.json_body import JsonBodyRoute
from upload_service.main import create_app

LIMIT_KB = 1
LIMIT = LIMIT_KB * 1024
ALLOWED = "https://app.example.com"
BATCH_CHECK = "/v1/documents/batch-check"


class CountingBody:
    """A request body of `total` bytes in `chunk`-sized pieces that records how many were pulled."""

    def __init__(self, total: int, chunk: int = 256) -> None:
        self.total = total
        self.chunk = chunk
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while self.pulled < self.total:
            piece = b" " * min(self.chunk, self.total - self.pulled)
            self.pulled += len(piece)
            yield piece


@pytest.fixture
async def client(make_settings: MakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(max_json_body_kb=LIMIT_KB, cors_allow_origins=[ALLOWED])
    async with running_app(create_app(settings)) as client:
        yield client


async def test_a_forged_token_is_refused_before_any_of_the_body_is_read(
    client: httpx.AsyncClient,
) -> None:
    body = CountingBody(100 * LIMIT)
    response = await client.post(BATCH_CHECK, content=body, headers=bearer("not.a.token"))
    assert_unauthenticated(response)
    assert body.pulled == 0


async def test_an_expired_token_is_refused_before_any_of_the_body_is_read(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    body = CountingBody(10)
    token = make_token("user-a", ttl_s=-60)
    response = await client.post(BATCH_CHECK, content=body, headers=bearer(token))
    assert_unauthenticated(response)
    assert body.pulled == 0


async def test_a_declared_length_over_the_limit_is_413_before_the_body_is_read(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    body = CountingBody(100 * LIMIT)
    headers = {**bearer(make_token()), "Content-Length": str(body.total), "Origin": ALLOWED}
    response = await client.post(BATCH_CHECK, content=body, headers=headers)
    envelope = assert_envelope(response, 413, "FILE_TOO_LARGE")
    assert envelope["details"] == {"max_bytes": LIMIT}
    assert response.headers["access-control-allow-origin"] == ALLOWED
    assert body.pulled == 0


async def test_a_chunked_body_is_cut_off_with_413_as_soon_as_it_passes_the_limit(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    body = CountingBody(100 * LIMIT)
    headers = {**bearer(make_token()), "Content-Type": "application/json"}
    response = await client.post(BATCH_CHECK, content=body, headers=headers)
    envelope = assert_envelope(response, 413, "FILE_TOO_LARGE")
    assert envelope["details"] == {"max_bytes": LIMIT}
    assert body.pulled <= LIMIT + body.chunk


async def test_a_body_within_the_limit_is_served(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    doc_ids = [f"doc_{n:026d}" for n in range(20)]  # ~700 bytes of JSON
    response = await client.post(
        BATCH_CHECK, json={"doc_ids": doc_ids}, headers=bearer(make_token())
    )
    assert response.status_code == 200, response.text
    assert response.json()["results"] == dict.fromkeys(doc_ids, False)


def test_every_route_with_a_parsed_body_is_bounded(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    routes = [context.original_route for context in iter_route_contexts(app.routes)]
    parsed = [route for route in routes if isinstance(route, APIRoute) and route.body_field]
    assert parsed, "no route with a parsed body: this test guards nothing"
    unbounded = [route.path for route in parsed if not isinstance(route, JsonBodyRoute)]
    assert not unbounded, f"use route_class=JsonBodyRoute on the routers of {unbounded}"

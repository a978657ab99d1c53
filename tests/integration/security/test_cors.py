"""CORS: allowed origins get the headers on every answer (401, 413, 429 too); others get none."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.security.conftest import assert_envelope, assert_unauthenticated, bearer
from upload_service.main import create_app

ALLOWED = "https://app.example.com"
OTHER = "https://evil.example.net"
MUST_EXPOSE = {"x-request-id", "x-correlation-id", "retry-after", "location"}


@pytest.fixture
async def cors(make_settings: MakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(
        cors_allow_origins=[ALLOWED, "https://admin.example.com"],
        query_rate_limit="1/minute",
        max_file_size_mb=1,
    )
    app = create_app(settings)

    @app.get("/v1/test-crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    async with running_app(app) as client:
        yield client


def assert_cors(response: httpx.Response) -> None:
    assert response.headers["access-control-allow-origin"] == ALLOWED
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert exposed >= MUST_EXPOSE


def assert_no_cors(response: httpx.Response) -> None:
    assert not [name for name in response.headers if name.lower().startswith("access-control-")]


async def test_preflight_from_an_allowed_origin_needs_no_token(cors: httpx.AsyncClient) -> None:
    response = await cors.options(
        "/v1/documents",
        headers={
            "Origin": ALLOWED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ALLOWED
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed
    assert "idempotency-key" in allowed
    assert "POST" in response.headers["access-control-allow-methods"]


async def test_preflight_from_another_origin_gets_no_cors_headers(
    cors: httpx.AsyncClient,
) -> None:
    response = await cors.options(
        "/v1/documents",
        headers={"Origin": OTHER, "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code != 200
    assert_no_cors(response)
    assert "Origin" in response.headers["vary"]


async def test_401_to_an_allowed_origin_carries_cors_headers(cors: httpx.AsyncClient) -> None:
    response = await cors.get("/v1/documents", headers={"Origin": ALLOWED})
    assert_unauthenticated(response, token_sent=False)
    assert_cors(response)

    invalid = await cors.get("/v1/documents", headers={"Origin": ALLOWED} | bearer("garbage"))
    assert_unauthenticated(invalid)
    assert_cors(invalid)


async def test_429_to_an_allowed_origin_carries_cors_headers(
    cors: httpx.AsyncClient, make_token: MakeToken
) -> None:
    headers = {"Origin": ALLOWED} | bearer(make_token("user-a"))
    first = await cors.get("/v1/documents", headers=headers)
    assert first.status_code == 200
    assert_cors(first)
    refused = await cors.get("/v1/documents", headers=headers)
    assert_envelope(refused, 429, "RATE_LIMITED")
    assert_cors(refused)
    assert "retry-after" in refused.headers


async def test_413_to_an_allowed_origin_carries_cors_headers(
    cors: httpx.AsyncClient, make_token: MakeToken
) -> None:
    response = await cors.post(
        "/v1/documents",
        files={"file": ("big.pdf", b"%PDF-1.4\n" + b"0" * (2 * 1024 * 1024))},
        headers={"Origin": ALLOWED} | bearer(make_token("user-a")),
    )
    assert_envelope(response, 413, "FILE_TOO_LARGE")
    assert_cors(response)


async def test_another_origin_gets_no_cors_headers(
    cors: httpx.AsyncClient, make_token: MakeToken
) -> None:
    unauthenticated = await cors.get("/v1/documents", headers={"Origin": OTHER})
    assert unauthenticated.status_code == 401
    assert_no_cors(unauthenticated)
    ok = await cors.get("/v1/documents", headers={"Origin": OTHER} | bearer(make_token("user-b")))
    assert ok.status_code == 200
    assert_no_cors(ok)


async def test_no_origins_configured_means_no_cors_headers(
    make_settings: MakeSettings,
) -> None:
    async with running_app(create_app(make_settings())) as client:
        response = await client.get("/v1/documents", headers={"Origin": ALLOWED})
        assert response.status_code == 401
        assert_no_cors(response)
        preflight = await client.options(
            "/v1/documents", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "GET"}
        )
        assert "access-control-allow-origin" not in preflight.headers


async def test_500_to_an_allowed_origin_carries_cors_headers(
    cors: httpx.AsyncClient, make_token: MakeToken
) -> None:
    response = await cors.get(
        "/v1/test-crash", headers={"Origin": ALLOWED} | bearer(make_token("user-a"))
    )
    assert_envelope(response, 500, "INTERNAL_ERROR")
    assert_cors(response)


async def test_wildcard_origin_allows_any_origin(make_settings: MakeSettings) -> None:
    async with running_app(create_app(make_settings(cors_allow_origins=["*"]))) as client:
        response = await client.get("/v1/documents", headers={"Origin": OTHER})
        assert response.status_code == 401
        assert response.headers["access-control-allow-origin"] == OTHER

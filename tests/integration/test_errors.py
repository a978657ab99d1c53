"""The error envelope: every error has one shape, and every response carries the request headers."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse

from tests.fixtures.app import MakeSettings, running_app
from upload_service.errors import DocumentNotFound, NotFound, UploadServiceError
from upload_service.main import create_app

ENVELOPE_KEYS = {"error_code", "message", "request_id", "details"}


def assert_request_headers(response: httpx.Response) -> None:
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,128}", response.headers["x-request-id"])
    assert response.headers["x-correlation-id"]
    assert re.fullmatch(r"\d+\.\d{2}ms", response.headers["x-process-time"])


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict[str, object]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= ENVELOPE_KEYS
    assert body["error_code"] == code
    assert body["request_id"] == response.headers["x-request-id"]
    assert_request_headers(response)
    return dict(body)


def _app_with_test_routes(make_settings: MakeSettings) -> FastAPI:
    app = create_app(make_settings())

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret /etc/passwd SELECT * FROM documents")

    @app.get("/v1/missing")
    async def missing() -> None:
        raise DocumentNotFound("doc_X")

    @app.get("/v1/items")
    async def items(limit: int = Query(ge=1, le=100)) -> dict[str, int]:
        return {"limit": limit}

    return app


@pytest.fixture
async def test_client(make_settings: MakeSettings):  # type: ignore[no-untyped-def]
    async with running_app(_app_with_test_routes(make_settings)) as client:
        yield client


async def test_unknown_path_is_404_in_the_envelope(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.get("/v1/nothing-here", headers=auth_headers)
    assert_envelope(response, 404, "NOT_FOUND")


async def test_wrong_method_is_405_in_the_envelope(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.delete("/health", headers=auth_headers)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


async def test_validation_error_lists_the_field(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.get("/v1/items?limit=0", headers=auth_headers)
    body = assert_envelope(response, 422, "VALIDATION_ERROR")
    errors = body["errors"]
    assert isinstance(errors, list)
    assert errors[0]["loc"] == ["query", "limit"]


async def test_domain_error_keeps_its_code(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.get("/v1/missing", headers=auth_headers)
    body = assert_envelope(response, 404, "DOCUMENT_NOT_FOUND")
    assert body["message"] == "Document doc_X not found"


async def test_unexpected_error_is_a_generic_500_with_the_headers(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.get("/v1/boom", headers=auth_headers)
    body = assert_envelope(response, 500, "INTERNAL_ERROR")
    assert body["message"] == "Internal server error"
    for leak in ("/etc/passwd", "SELECT", "RuntimeError", "Traceback"):
        assert leak not in response.text


async def test_incoming_request_id_is_kept_and_a_bad_one_replaced(
    test_client: httpx.AsyncClient,
) -> None:
    kept = await test_client.get("/health", headers={"X-Request-ID": "abc.DEF-123_x"})
    assert kept.headers["x-request-id"] == "abc.DEF-123_x"
    assert kept.headers["x-correlation-id"] == "abc.DEF-123_x"
    replaced = await test_client.get("/health", headers={"X-Request-ID": "bad id;" + "x" * 200})
    assert replaced.headers["x-request-id"] != "bad id;" + "x" * 200
    assert_request_headers(replaced)


async def test_incoming_correlation_id_is_echoed(test_client: httpx.AsyncClient) -> None:
    response = await test_client.get(
        "/health", headers={"X-Request-ID": "r1", "X-Correlation-ID": "corr-42"}
    )
    assert response.headers["x-request-id"] == "r1"
    assert response.headers["x-correlation-id"] == "corr-42"


@pytest.mark.parametrize("subclass_first", [True, False])
async def test_subclass_handler_wins_over_base_whatever_the_order(
    make_settings: MakeSettings, auth_headers: dict[str, str], subclass_first: bool
) -> None:
    app = create_app(make_settings())

    async def base_handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled_by": "base"}, status_code=418)

    async def sub_handler(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"handled_by": "subclass"}, status_code=418)

    pairs = [(NotFound, sub_handler), (UploadServiceError, base_handler)]
    for exc_class, handler in pairs if subclass_first else reversed(pairs):
        app.add_exception_handler(exc_class, handler)

    @app.get("/v1/raise-sub")
    async def raise_sub() -> None:
        raise DocumentNotFound("doc_1")

    @app.get("/v1/raise-base")
    async def raise_base() -> None:
        raise UploadServiceError()

    async with running_app(app) as client:
        sub = await client.get("/v1/raise-sub", headers=auth_headers)
        base = await client.get("/v1/raise-base", headers=auth_headers)
    assert sub.json() == {"handled_by": "subclass"}
    assert base.json() == {"handled_by": "base"}


async def test_405_lists_every_method_the_path_serves(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.request(
        "PUT", "/v1/documents/doc_01HN3K8V2NKDQ7HTXJFR9CPWK0", headers=auth_headers
    )
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "DELETE"}


async def test_405_on_a_literal_path_lists_only_its_own_methods(
    test_client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    response = await test_client.get("/v1/documents/batch-check/x", headers=auth_headers)
    assert response.status_code == 404
    response = await test_client.put("/v1/documents/batch-check", headers=auth_headers)
    assert_envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert response.headers["allow"] == "POST"

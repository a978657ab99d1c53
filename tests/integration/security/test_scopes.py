"""Scopes: `/internal/*` needs the `internal` scope; a valid token without it is 403 FORBIDDEN."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.security.conftest import assert_envelope, assert_unauthenticated, bearer
from upload_service.dependencies import require_scope
from upload_service.main import create_app

REPROCESS = "/internal/documents/{doc_id}/reprocess"
UNKNOWN_DOC = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"


def _with_probe(app: FastAPI) -> FastAPI:
    # A route guarded exactly as the internal router guards its routes, so the dependency is
    # specified on its own, whichever routers main.py mounts.
    probe = APIRouter(prefix="/internal", dependencies=[Depends(require_scope("internal"))])

    @probe.get("/scope-probe")
    async def scope_probe() -> dict[str, bool]:
        return {"ok": True}

    app.include_router(probe)
    return app


@pytest.fixture
async def scoped(make_settings: MakeSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(_with_probe(create_app(make_settings()))) as client:
        yield client


async def test_internal_scope_lets_the_caller_through(
    scoped: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token("svc-reindexer", scopes=["read", "internal"])
    response = await scoped.get("/internal/scope-probe", headers=bearer(token))
    assert response.status_code == 200
    assert response.json() == {"ok": True}


@pytest.mark.parametrize("scopes", [None, ["read"], ["internal:read"], ["Internal"]])
async def test_token_without_the_internal_scope_is_403(
    scoped: httpx.AsyncClient, make_token: MakeToken, scopes: list[str] | None
) -> None:
    response = await scoped.get("/internal/scope-probe", headers=bearer(make_token(scopes=scopes)))
    body = assert_envelope(response, 403, "FORBIDDEN")
    assert "internal" in body["message"]
    assert "www-authenticate" not in response.headers


async def test_internal_route_without_a_token_is_401_not_403(scoped: httpx.AsyncClient) -> None:
    assert_unauthenticated(await scoped.get("/internal/scope-probe"), token_sent=False)


async def test_mounted_internal_routes_require_the_scope(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    async with running_app(create_app(make_settings())) as client:
        path = REPROCESS.format(doc_id=UNKNOWN_DOC)
        unscoped = await client.post(path, headers=bearer(make_token()))
        if unscoped.json()["error_code"] == "NOT_FOUND":
            pytest.skip("main.py does not mount the internal router (api/internal.py)")
        assert_envelope(unscoped, 403, "FORBIDDEN")
        assert_unauthenticated(await client.post(path), token_sent=False)
        service = bearer(make_token("svc", scopes=["internal"]))
        assert (await client.post(path, headers=service)).status_code == 404

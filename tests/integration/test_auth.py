"""Minimal auth: a valid HS256 token names the caller; anything else is 401 with a challenge."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI
from jose import jwt

from tests.fixtures.app import TEST_SECRET, MakeSettings, MakeToken, running_app
from upload_service.dependencies import CurrentUser
from upload_service.main import create_app


def _app(make_settings: MakeSettings) -> FastAPI:
    app = create_app(make_settings())

    @app.get("/v1/whoami")
    async def whoami(user: CurrentUser) -> dict[str, object]:
        return {"sub": user.sub, "email": user.email, "scopes": sorted(user.scopes)}

    return app


@pytest.fixture
async def whoami(make_settings: MakeSettings):  # type: ignore[no-untyped-def]
    async with running_app(_app(make_settings)) as client:
        yield client


async def test_valid_token_names_the_caller(
    whoami: httpx.AsyncClient, make_token: MakeToken
) -> None:
    token = make_token("alice", email="a@example.com", scopes=["internal", "read"])
    response = await whoami.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    assert response.json() == {
        "sub": "alice",
        "email": "a@example.com",
        "scopes": ["internal", "read"],
    }


async def test_missing_header_is_401_with_a_challenge(whoami: httpx.AsyncClient) -> None:
    response = await whoami.get("/v1/whoami")
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == 'Bearer realm="upload-service"'
    assert response.headers["x-request-id"]


def _signed(claims: dict[str, object], secret: str = TEST_SECRET, alg: str = "HS256") -> str:
    return str(jwt.encode(claims, secret, algorithm=alg))


NOW = int(time.time())


@pytest.mark.parametrize(
    "token",
    [
        pytest.param("garbage", id="garbage"),
        pytest.param(
            _signed({"sub": "x", "exp": NOW + 60}, secret="wrong" * 8), id="bad-signature"
        ),
        pytest.param(_signed({"sub": "x", "exp": NOW - 3600}), id="expired"),
        pytest.param(_signed({"sub": "x"}), id="no-exp"),
        pytest.param(_signed({"exp": NOW + 60}), id="no-sub"),
        pytest.param(_signed({"sub": "x", "exp": NOW + 60}, alg="HS512"), id="alg-not-allowed"),
        pytest.param(
            jwt.encode({"sub": "x", "exp": NOW + 60}, "", algorithm="HS256")
            .rsplit(".", 1)[0]
            .replace("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0")
            + ".",
            id="alg-none",
        ),
    ],
)
async def test_invalid_token_is_401_invalid_token(whoami: httpx.AsyncClient, token: str) -> None:
    response = await whoami.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert response.json()["error_code"] == "UNAUTHENTICATED"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_not_bearer_is_401(whoami: httpx.AsyncClient) -> None:
    response = await whoami.get("/v1/whoami", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401
    assert response.json()["error_code"] == "UNAUTHENTICATED"

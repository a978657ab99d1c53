"""The security suite's app: HS256 and JWKS keys, audience and issuer checked, and assertions."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.fixtures.app import MakeSettings, running_app
from tests.fixtures.jwks import AUDIENCE, ISSUER, JwksServer
from upload_service.main import create_app

PROTECTED = "/v1/documents"
CHALLENGE = 'Bearer realm="upload-service"'
INVALID_TOKEN_CHALLENGE = 'Bearer realm="upload-service", error="invalid_token"'


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for `token`."""
    return {"Authorization": f"Bearer {token}"}


def assert_envelope(response: httpx.Response, status: int, error_code: str) -> dict[str, Any]:
    """The response is `status` with the contract's error envelope; returns the body."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert set(body) == {"error_code", "message", "request_id", "details"}
    assert body["error_code"] == error_code
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def assert_unauthenticated(response: httpx.Response, *, token_sent: bool = True) -> None:
    """401 UNAUTHENTICATED, the envelope, and the Bearer challenge the contract names."""
    assert_envelope(response, 401, "UNAUTHENTICATED")
    expected = INVALID_TOKEN_CHALLENGE if token_sent else CHALLENGE
    assert response.headers["www-authenticate"] == expected


def jwks_settings(make_settings: MakeSettings, jwks_url: str, **overrides: Any) -> Any:
    """Settings accepting HS256 (test secret), RS256 and ES256 (JWKS), with aud and iss set."""
    values: dict[str, Any] = {
        "jwt_algorithms": ["HS256", "RS256", "ES256"],
        "jwt_jwks_url": jwks_url,
        "jwt_audience": AUDIENCE,
        "jwt_issuer": ISSUER,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
async def secured(
    make_settings: MakeSettings, jwks_server: JwksServer
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with every verification feature on, its JWKS served over real HTTP."""
    async with running_app(create_app(jwks_settings(make_settings, jwks_server.url))) as client:
        yield client

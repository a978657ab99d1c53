"""`POST /v1/dev/token`: the development sign-in exists only in development with the
development secret, and is absent (404, not documented) in every other configuration."""

from __future__ import annotations

import pytest

from tests.fixtures.app import TEST_SECRET, MakeSettings, MakeToken, running_app
from upload_service.config import DEV_JWT_SECRET
from upload_service.edge.auth import mint_token
from upload_service.main import create_app


async def test_development_sign_in_mints_a_token_the_api_accepts(
    make_settings: MakeSettings,
) -> None:
    app = create_app(make_settings(environment="development", jwt_secret=DEV_JWT_SECRET))
    async with running_app(app) as client:
        page = await client.get("/")
        assert '<meta name="dev-sign-in" content="on" />' in page.text
        # No token needed to ask for one.
        minted = await client.post("/v1/dev/token", json={"user": "alice"})
        assert minted.status_code == 200, minted.text
        body = minted.json()
        assert body["token_type"] == "bearer"
        headers = {"Authorization": f"Bearer {body['access_token']}"}
        assert (await client.get("/v1/documents", headers=headers)).status_code == 200
        refused = await client.post("/v1/dev/token", json={"user": "a/b"})
        assert refused.status_code == 422
        assert refused.json()["error_code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("environment", "secret"),
    [
        ("test", TEST_SECRET),
        ("development", TEST_SECRET),
        ("test", DEV_JWT_SECRET),
        ("production", TEST_SECRET),
    ],
)
async def test_the_route_does_not_exist_in_any_other_configuration(
    make_settings: MakeSettings, make_token: MakeToken, environment: str, secret: str
) -> None:
    app = create_app(make_settings(environment=environment, jwt_secret=secret))
    async with running_app(app) as client:
        # Not public there: like any path, it needs a token first...
        anonymous = await client.post("/v1/dev/token", json={"user": "alice"})
        assert anonymous.status_code == 401
        # ...and with one, there is nothing at that path.
        headers = {"Authorization": f"Bearer {mint_token(secret, 'user-a')}"}
        response = await client.post("/v1/dev/token", json={"user": "alice"}, headers=headers)
        assert response.status_code == 404
        assert response.json()["error_code"] == "NOT_FOUND"
        openapi = (await client.get("/openapi.json")).json()
        assert "/v1/dev/token" not in openapi["paths"]
        page = await client.get("/")
        assert '<meta name="dev-sign-in" content="off" />' in page.text

"""`POST /v1/dev/token`: the web page's sign-in by user name, in development only.

`create_app` includes this router only with `ENVIRONMENT=development` and the development
secret (`Settings.dev_sign_in_enabled`): anywhere else the route does not exist (404). It mints
what `upload-service token --sub USER` prints, and it is never in the OpenAPI document.
"""

from __future__ import annotations

from fastapi import APIRouter

from upload_service.api.json_body import JsonBodyRoute
from upload_service.api.openapi import UNDOCUMENTED
from upload_service.api.schemas import DevTokenIn, DevTokenOut
from upload_service.dependencies import SettingsDep
from upload_service.edge.auth import mint_token

# A working day: a development session should not expire mid-afternoon.
DEV_TOKEN_TTL_S = 12 * 3600

router = APIRouter(
    prefix="/v1/dev", include_in_schema=False, tags=[UNDOCUMENTED], route_class=JsonBodyRoute
)


@router.post("/token")
async def mint_dev_token(body: DevTokenIn, settings: SettingsDep) -> DevTokenOut:
    assert settings.jwt_secret is not None  # The router exists only with the dev secret.
    token = mint_token(settings.jwt_secret, body.user, ttl_s=DEV_TOKEN_TTL_S)
    return DevTokenOut(access_token=token, expires_in=DEV_TOKEN_TTL_S)

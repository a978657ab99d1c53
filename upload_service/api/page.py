"""The web page at `/`, its assets, and the API docs (`/docs`, `/redoc`) with no CDN.

None of these is an API operation: they stay out of the OpenAPI document. The index is never
cached (it names the current build's assets); the assets have content-hashed or versioned
names, so a browser keeps them for a year.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import FileResponse, HTMLResponse

from upload_service.api.openapi import TITLE, UNDOCUMENTED
from upload_service.dependencies import WebAssetsDep
from upload_service.errors import NotFound

INDEX_CACHE = "no-cache"
ASSET_CACHE = "public, max-age=31536000, immutable"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False, tags=[UNDOCUMENTED])


@router.get("/")
async def web_page(assets: WebAssetsDep) -> HTMLResponse:
    return HTMLResponse(assets.index_html, headers={"Cache-Control": INDEX_CACHE})


@router.get("/assets/{path:path}")
async def web_asset(path: str, assets: WebAssetsDep) -> FileResponse:
    file = assets.file(path)
    if file is None:
        raise NotFound(f"No asset {path}")
    return FileResponse(file, headers={"Cache-Control": ASSET_CACHE})


@router.get("/docs")
async def swagger_ui(assets: WebAssetsDep) -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=assets.docs.swagger_ui_js,
        swagger_css_url=assets.docs.swagger_ui_css,
        swagger_favicon_url=assets.docs.swagger_favicon,
        oauth2_redirect_url=OAUTH2_REDIRECT,
    )


@router.get(OAUTH2_REDIRECT)
async def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/redoc")
async def redoc(assets: WebAssetsDep) -> HTMLResponse:
    return get_redoc_html(
        openapi_url="/openapi.json",
        title=f"{TITLE} - ReDoc",
        redoc_js_url=assets.docs.redoc_js,
        redoc_favicon_url=assets.docs.swagger_favicon,
        with_google_fonts=False,
    )

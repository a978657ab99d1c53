"""The web page as the service serves it: `/`, its assets, `/docs` and `/redoc` with no CDN,
and the page kept out of both OpenAPI documents. Needs the built page (`make web`)."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from tests.fixtures.app import MakeSettings, running_app
from upload_service.api.openapi import internal_openapi
from upload_service.config import DEV_JWT_SECRET
from upload_service.main import create_app
from upload_service.page.assets import PACKAGED_DIR


class _Urls(HTMLParser):
    """Every URL a page loads: script and image sources, stylesheet and icon links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and (name == "src" or (tag == "link" and name == "href")):
                self.urls.append(value)


def loaded_urls(html: str) -> list[str]:
    parser = _Urls()
    parser.feed(html)
    # Swagger UI's and ReDoc's pages also name URLs inside their inline scripts.
    inline = re.findall(r"""['"](https?://[^'"]+|/[^'"\s]*\.(?:js|css|png))['"]""", html)
    return parser.urls + inline


def test_the_page_is_built() -> None:
    # Not a skip: without a build the browser tests could not run either.
    assert (PACKAGED_DIR / "index.html").is_file(), "run `make web` first"


async def test_page_is_public_and_never_cached_and_names_hashed_assets(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    urls = loaded_urls(response.text)
    scripts = [url for url in urls if url.endswith(".js")]
    assert scripts
    assert all(re.fullmatch(r"/assets/app-[A-Z0-9]+\.js", url) for url in scripts)
    # Outside development the page offers no development sign-in.
    assert '<meta name="dev-sign-in" content="off" />' in response.text
    # Nor direct uploads to S3 on local storage: the page goes the tus way at once.
    assert '<meta name="direct-uploads" content="off" />' in response.text


async def test_assets_are_cached_for_a_year_with_their_type_and_gzipped(
    client: httpx.AsyncClient,
) -> None:
    page = (await client.get("/")).text
    for url in loaded_urls(page):
        if not url.startswith("/assets/"):
            continue
        response = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.status_code == 200, url
        assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
        expected = "text/javascript" if url.endswith(".js") else "text/css"
        assert response.headers["content-type"].startswith(expected)
        assert response.headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(
    "path", ["/assets/nothing.js", "/assets/..%2Findex.html", "/assets/%2e%2e%2Fmanifest.json"]
)
async def test_unknown_or_escaping_asset_paths_are_404_in_the_envelope(
    client: httpx.AsyncClient, path: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error_code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_api_docs_load_only_from_the_service(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    urls = loaded_urls(response.text)
    assert any(url.endswith(".js") for url in urls)
    for url in urls:
        assert url.startswith("/"), f"{path} loads {url} from elsewhere"
        if url != "/openapi.json":
            assert (await client.get(url)).status_code == 200, url


async def test_page_and_dev_sign_in_are_in_neither_openapi_document(
    make_settings: MakeSettings,
) -> None:
    app = create_app(make_settings(environment="development", jwt_secret=DEV_JWT_SECRET))
    async with running_app(app) as client:
        public = (await client.get("/openapi.json")).json()
    for document in (public, internal_openapi(app)):
        paths = set(document["paths"])
        assert not {"/", "/assets/{path}", "/docs", "/redoc", "/v1/dev/token"} & paths


async def test_an_unbuilt_page_answers_503_saying_how_to_build_it(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    app: FastAPI = create_app(make_settings(web_assets_dir=tmp_path / "not-built"))
    async with running_app(app) as client:
        response = await client.get("/")
        assert response.status_code == 503
        body = response.json()
        assert body["error_code"] == "SERVICE_UNAVAILABLE"
        assert "make web" in body["message"]
        # The API itself does not depend on its page.
        assert (await client.get("/health")).status_code == 200

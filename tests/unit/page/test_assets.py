"""Loading the built page: the dev sign-in and direct-upload switches, the docs' URLs, asset
paths kept inside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from upload_service.page.assets import load_web_assets

MANIFEST = {
    "swagger_ui_js": "/assets/vendor/swagger-ui-dist-5/swagger-ui-bundle.js",
    "swagger_ui_css": "/assets/vendor/swagger-ui-dist-5/swagger-ui.css",
    "swagger_favicon": "/assets/vendor/swagger-ui-dist-5/favicon-32x32.png",
    "redoc_js": "/assets/vendor/redoc-2/redoc.standalone.js",
}


@pytest.fixture
def built(tmp_path: Path) -> Path:
    root = tmp_path / "web_assets"
    (root / "assets" / "vendor").mkdir(parents=True)
    (root / "index.html").write_text(
        '<head><meta name="dev-sign-in" content="off" />'
        '<meta name="direct-uploads" content="off" /></head>'
    )
    (root / "manifest.json").write_text(json.dumps(MANIFEST))
    (root / "assets" / "app-ABC.js").write_text("console.log(1)")
    (root / "secret.txt").write_text("outside the assets")
    return root


def test_not_built_is_none(tmp_path: Path) -> None:
    assert load_web_assets(tmp_path / "nothing", dev_sign_in=False) is None


def test_dev_sign_in_is_switched_on_only_when_offered(built: Path) -> None:
    off = load_web_assets(built, dev_sign_in=False)
    on = load_web_assets(built, dev_sign_in=True)
    assert off is not None
    assert on is not None
    assert b'content="off"' in off.index_html
    assert b'content="on"' in on.index_html
    assert on.docs.redoc_js == MANIFEST["redoc_js"]


def test_direct_uploads_are_switched_on_only_when_offered(built: Path) -> None:
    off = load_web_assets(built, dev_sign_in=True)
    on = load_web_assets(built, dev_sign_in=False, direct_uploads=True)
    assert off is not None
    assert on is not None
    assert b'<meta name="direct-uploads" content="off" />' in off.index_html
    assert b'<meta name="direct-uploads" content="on" />' in on.index_html
    assert b'<meta name="dev-sign-in" content="off" />' in on.index_html


@pytest.mark.parametrize(
    "path", ["../secret.txt", "vendor/../../secret.txt", "/etc/passwd", ".hidden", "", "vendor"]
)
def test_asset_paths_never_leave_the_assets_folder(built: Path, path: str) -> None:
    assets = load_web_assets(built, dev_sign_in=False)
    assert assets is not None
    assert assets.file(path) is None


def test_a_built_asset_is_found(built: Path) -> None:
    assets = load_web_assets(built, dev_sign_in=False)
    assert assets is not None
    assert assets.file("app-ABC.js") == built / "assets" / "app-ABC.js"

"""The built web page: its index, its content-hashed assets, and the API docs' vendored scripts.

`web/build.mjs` writes them into `upload_service/web_assets/` (or `WEB_ASSETS_DIR`); they are
read once at start-up. When they have not been built, the service still runs and `/` says how
to build them: the API does not depend on its page.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

PACKAGED_DIR = Path(__file__).resolve().parents[1] / "web_assets"
BUILD_HINT = "The web page is not built: run `make web` (npm ci and npm run build in web/)."

# What index.html says about the development sign-in; the service turns it on where it exists.
_DEV_SIGN_IN_OFF = b'<meta name="dev-sign-in" content="off" />'
_DEV_SIGN_IN_ON = b'<meta name="dev-sign-in" content="on" />'
# Whether the page may send files straight to S3 (`/v1/uploads/direct` exists): said in the page
# itself, so it knows before its first upload without a request that fails where it does not.
_DIRECT_UPLOADS_OFF = b'<meta name="direct-uploads" content="off" />'
_DIRECT_UPLOADS_ON = b'<meta name="direct-uploads" content="on" />'
# Asset paths are the build's own names: letters, digits, dots, dashes and folders, no `..`.
_ASSET_PATH = re.compile(r"^(?:[A-Za-z0-9_@-][A-Za-z0-9_.@-]*/)*[A-Za-z0-9_@-][A-Za-z0-9_.@-]*$")


@dataclass(frozen=True)
class DocsAssets:
    """Where Swagger UI's and ReDoc's files are served from (no CDN)."""

    swagger_ui_js: str
    swagger_ui_css: str
    swagger_favicon: str
    redoc_js: str


@dataclass(frozen=True)
class WebAssets:
    index_html: bytes
    docs: DocsAssets
    assets_dir: Path

    def file(self, path: str) -> Path | None:
        """The built file at `/assets/{path}`, or None for anything else (never outside)."""
        if not _ASSET_PATH.match(path) or ".." in path.split("/"):
            return None
        candidate = self.assets_dir / path
        return candidate if candidate.is_file() else None


def load_web_assets(
    directory: Path | None, *, dev_sign_in: bool, direct_uploads: bool = False
) -> WebAssets | None:
    """The assets built into `directory` (the packaged ones when None), or None if not built.

    `dev_sign_in` and `direct_uploads` switch on what the page offers only where it exists.
    """
    root = directory if directory is not None else PACKAGED_DIR
    try:
        index = (root / "index.html").read_bytes()
        manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if dev_sign_in:
        index = index.replace(_DEV_SIGN_IN_OFF, _DEV_SIGN_IN_ON)
    if direct_uploads:
        index = index.replace(_DIRECT_UPLOADS_OFF, _DIRECT_UPLOADS_ON)
    docs = DocsAssets(
        swagger_ui_js=manifest["swagger_ui_js"],
        swagger_ui_css=manifest["swagger_ui_css"],
        swagger_favicon=manifest["swagger_favicon"],
        redoc_js=manifest["redoc_js"],
    )
    return WebAssets(index_html=index, docs=docs, assets_dir=root / "assets")

"""Generate the typed Python client from the public OpenAPI document: `make client`.

The document is built in process (no server), written to `clients/openapi.json`, and
`openapi-python-client` (pinned in the dev dependencies) turns it into `clients/python/`.
A test regenerates both into a temporary folder and fails if anything differs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CLIENTS = Path(__file__).resolve().parent
CONFIG = CLIENTS / "openapi-python-client.yaml"


def public_document() -> str:
    """The public OpenAPI document as stable, pretty JSON."""
    from upload_service.config import load_settings
    from upload_service.main import create_app

    # Built from defaults, not the caller's environment or .env: the document must not vary.
    app = create_app(load_settings(_env_file=None, environment="development"))
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False) + "\n"


def generate(out: Path = CLIENTS) -> None:
    """Write `openapi.json` and the `python/` client package into `out`."""
    out.mkdir(parents=True, exist_ok=True)
    document = out / "openapi.json"
    # In a fresh interpreter: pydantic caches schemas by type equality, and `Literal` types that
    # differ only in order are equal, so a process that built another one first could reorder
    # an enum in the document. Its environment is clean and its folder has no `.env`, because
    # importing `upload_service.main` builds the module-level app from the settings it finds.
    with tempfile.TemporaryDirectory() as nowhere:
        built = subprocess.run(
            [
                sys.executable,
                "-c",
                "import clients.generate as g; print(g.public_document(), end='')",
            ],
            cwd=nowhere,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(CLIENTS.parent)},
            capture_output=True,
            text=True,
            timeout=120,
        )
    if built.returncode != 0:
        raise RuntimeError(f"building the OpenAPI document failed:\n{built.stderr[-3000:]}")
    document.write_text(built.stdout, encoding="utf-8")
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "python"
        subprocess.run(
            [
                str(Path(sys.executable).with_name("openapi-python-client")),
                "generate",
                "--path",
                str(document),
                "--config",
                str(CONFIG),
                "--meta",
                "setup",
                "--output-path",
                str(target),
                "--overwrite",
                "--fail-on-warning",
            ],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            # The post hooks call `ruff`: the one installed beside this Python.
            env={
                **os.environ,
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            },
        )
        shutil.rmtree(out / "python", ignore_errors=True)
        shutil.copytree(target, out / "python")


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else CLIENTS)

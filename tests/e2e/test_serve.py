"""The embedded default, for real: `upload-service serve` on a fresh folder, then HTTP to it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.gunicorn import gunicorn_argv
from tests.fixtures.app import TEST_SECRET, LiveServer
from tests.integration.documents.conftest import pdf_bytes
from upload_service.edge.auth import mint_token

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "upload_service.cli"]
UVICORN = [sys.executable, "-m", "uvicorn", "upload_service.main:app", "--port", "{port}"]


def upload_and_wait_until_classified(url: str, timeout_s: float = 30.0) -> dict[str, object]:
    """Upload a PDF as user-a, then poll its document until classification has finished."""
    headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, 'user-a')}"}
    upload = httpx.post(
        f"{url}/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=headers
    )
    assert upload.status_code == 202, upload.text
    document_url = f"{url}/v1/documents/{upload.json()['doc_id']}"
    deadline = time.monotonic() + timeout_s
    while True:
        document: dict[str, object] = httpx.get(document_url, headers=headers).json()
        if document["status"] in ("complete", "failed") or time.monotonic() > deadline:
            return document
        time.sleep(0.2)


def test_token_command_mints_a_token_the_server_accepts(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server({}, argv=[*CLI, "serve", "--port", "{port}"])
    token = subprocess.run(
        [*CLI, "token", "--sub", "alice", "--scope", "internal"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
        timeout=60,
    ).stdout.strip()
    headers = {"Authorization": f"Bearer {token}"}

    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json()["status"] == "alive"
    for header in ("x-request-id", "x-correlation-id", "x-process-time"):
        assert header in health.headers

    ready = httpx.get(f"{server.url}/readiness")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"

    upload = httpx.post(
        f"{server.url}/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=headers
    )
    assert upload.status_code == 202, upload.text
    doc_id = upload.json()["doc_id"]
    fetched = httpx.get(f"{server.url}/v1/documents/{doc_id}", headers=headers)
    assert fetched.status_code == 200
    # The embedded default keeps its data under ./var of the folder it was started in.
    assert (tmp_path / "var" / "upload_service.db").exists()
    assert list((tmp_path / "var" / "storage").rglob("*.pdf"))

    # uvicorn re-raises SIGTERM after a graceful shutdown, so the status is -15, not a crash.
    assert server.stop() in (0, -15)
    assert "Application shutdown complete" in server.log.read_text()


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(UVICORN, id="uvicorn"),
        pytest.param([*UVICORN, "--reload"], id="uvicorn --reload"),
        # Two workers that start at once, each migrating the same new SQLite file.
        pytest.param(gunicorn_argv(workers=2), id="gunicorn, two workers"),
    ],
)
def test_any_server_on_a_fresh_folder_migrates_the_embedded_database_itself(
    live_server: Callable[..., LiveServer], tmp_path: Path, argv: list[str]
) -> None:
    env = {"JWT_SECRET": TEST_SECRET}
    if "gunicorn" in argv:
        env["PROMETHEUS_MULTIPROC_DIR"] = str(tmp_path / "metrics")
    server = live_server(env, argv=argv)
    ready = httpx.get(f"{server.url}/readiness")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"

    document = upload_and_wait_until_classified(server.url)

    assert document["status"] == "complete", document
    assert (tmp_path / "var" / "upload_service.db").exists()
    assert "Traceback" not in server.log.read_text()


def test_unauthenticated_request_is_401_over_real_http(
    live_server: Callable[..., LiveServer],
) -> None:
    server = live_server({}, argv=[*CLI, "serve", "--port", "{port}"])
    response = httpx.get(f"{server.url}/v1/documents")
    assert response.status_code == 401
    assert response.json()["request_id"] == response.headers["x-request-id"]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_readme_opens_with_the_two_commands() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    first_block = readme.split("```")[1]
    assert "make run" in first_block
    assert "make test" in first_block

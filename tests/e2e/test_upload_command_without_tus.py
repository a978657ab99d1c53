"""`upload-service upload` against a server without tus (a deployment from before it)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.fixtures.app import LiveServer
from tests.integration.documents.conftest import pdf_bytes

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "upload_service.cli"]
ROOT = Path(__file__).resolve().parents[2]
NO_TUS = [
    *(sys.executable, "-m", "uvicorn", "--factory", "tests.e2e.no_tus_app:app"),
    *("--host", "127.0.0.1", "--port", "{port}", "--no-access-log"),
]
MIB = 1024 * 1024


@pytest.fixture
def old_server(live_server: Callable[..., LiveServer]) -> LiveServer:
    server = live_server({"PYTHONPATH": str(ROOT)}, argv=NO_TUS)
    creation = httpx.post(f"{server.url}/v1/uploads/tus", headers={"Tus-Resumable": "1.0.0"})
    assert creation.status_code == 404  # No tus endpoint at all.
    assert httpx.get(f"{server.url}/health").status_code == 200  # The service otherwise.
    return server


def upload(server: LiveServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "upload", *args, "--url", server.url, "--sub", "alice"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "UPLOAD_SERVICE_STATE_DIR": str(tmp_path / "state")},
        timeout=120,
        check=False,
    )


def files(tmp_path: Path) -> list[Path]:
    paths = [tmp_path / "a.pdf", tmp_path / "b.pdf"]
    for n, path in enumerate(paths):
        path.write_bytes(pdf_bytes(f"file {n}", pad=2 * MIB))
    return paths


def test_auto_mode_falls_back_to_the_plain_upload_with_one_note(
    old_server: LiveServer, tmp_path: Path
) -> None:
    paths = files(tmp_path)
    result = upload(old_server, tmp_path, *map(str, paths), "--tus-threshold", "1MiB")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: ")]
    assert notes == [
        "note: the service offers no resumable (tus) uploads: POST /v1/uploads/tus answered "
        "HTTP 404; sending whole files instead"
    ]
    printed = [line.split("\t") for line in result.stdout.strip().splitlines()]
    assert [(status, path) for _, status, path in printed] == [
        ("queued", str(path)) for path in paths
    ]
    assert all(doc_id.startswith("doc_") for doc_id, _, _ in printed)


def test_with_tus_a_server_without_it_is_a_clear_error(
    old_server: LiveServer, tmp_path: Path
) -> None:
    (path, _) = files(tmp_path)
    result = upload(old_server, tmp_path, str(path), "--tus")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Traceback" not in result.stderr
    assert f"{path}\terror\tthe service offers no resumable (tus) uploads: " in result.stderr
    assert "run without --tus" in result.stderr

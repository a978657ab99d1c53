"""`upload-service upload` against a real server: ids printed, errors from the envelope."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.app import LiveServer
from tests.integration.documents.conftest import pdf_bytes

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "upload_service.cli"]


def test_upload_command_prints_ids_and_envelope_errors(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server({}, argv=[*CLI, "serve", "--port", "{port}"])
    good = tmp_path / "invoice.pdf"
    good.write_bytes(pdf_bytes(pad=3 * 1024 * 1024))
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    result = subprocess.run(
        [*CLI, "upload", str(good), str(bad), "--url", server.url, "--sub", "alice"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1  # One file was refused.
    doc_id, status, path = result.stdout.strip().split("\t")
    assert doc_id.startswith("doc_")
    assert status == "queued"
    assert path == str(good)
    assert "UNSUPPORTED_FILE_TYPE" in result.stderr
    assert "Traceback" not in result.stderr


def test_upload_command_waits_for_classification(
    live_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = live_server({}, argv=[*CLI, "serve", "--port", "{port}"])
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(pdf_bytes("Invoice number 7 amount due total payment terms"))
    result = subprocess.run(
        [*CLI, "upload", str(invoice), "--url", server.url, "--wait", "--wait-timeout", "60"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    doc_id, status, _ = result.stdout.strip().split("\t")
    assert doc_id.startswith("doc_")
    assert status == "complete"

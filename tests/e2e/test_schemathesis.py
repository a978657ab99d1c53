"""Fuzz every public operation of a live server with schemathesis: no 5xx, answers conform."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken

pytestmark = pytest.mark.e2e

CONFIG = Path(__file__).with_name("schemathesis.toml")
# tus bodies are `application/offset+octet-stream`: raw bytes, serialised as octet-stream's are.
SCHEMATHESIS = [
    sys.executable,
    "-c",
    "import schemathesis; "
    "schemathesis.serializer.alias('application/offset+octet-stream', 'application/octet-stream'); "
    "from schemathesis.cli import schemathesis as cli; cli()",
]


def test_public_api_survives_fuzzing_and_matches_its_document(
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: object,
    pg_url: str,
    tmp_path: Path,
) -> None:
    server = live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            # The fuzzer sends hundreds of requests a minute; limits have their own tests.
            "UPLOAD_RATE_LIMIT": "100000/minute",
            "QUERY_RATE_LIMIT": "100000/minute",
            "LOG_LEVEL": "WARNING",
        }
    )
    run = subprocess.run(
        [
            *SCHEMATHESIS,
            "--config-file",
            str(CONFIG),
            "run",
            f"{server.url}/openapi.json",
            "--header",
            f"Authorization: Bearer {make_token('fuzzer')}",
            "--checks",
            "all",
            "--report",
            "junit",
            "--report-dir",
            str(tmp_path / "schemathesis"),
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-6000:]
    assert "No issues found" in output, output[-6000:]

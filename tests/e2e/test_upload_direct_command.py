"""`upload-service upload --direct` against a real server on S3 (moto): the bytes go to S3,
the service verifies and records them, and an interrupted upload resumes where it stopped."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from mypy_boto3_s3 import S3Client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import TEST_SECRET, LiveServer
from tests.integration.documents.conftest import pdf_bytes
from upload_service.cli.direct_client import _StateFile
from upload_service.edge.auth import mint_token

pytestmark = pytest.mark.e2e

CLI = [sys.executable, "-m", "upload_service.cli"]
MIB = 1024 * 1024


@pytest.fixture
def direct_server(
    live_server: Callable[..., LiveServer],
    moto_server: str,
    s3_bucket: str,
    pg_url: str,
    pg_clean: AsyncEngine,
) -> LiveServer:
    return live_server(
        {
            "ENVIRONMENT": "test",
            "JWT_SECRET": TEST_SECRET,
            "DATABASE_URL": pg_url,
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": s3_bucket,
            "S3_ENDPOINT_URL": moto_server,
            "S3_REGION": "us-east-1",
            "DIRECT_SINGLE_MAX_MB": "1",
            "WORKER_ENABLED": "false",
        }
    )


def run_cli(server: LiveServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UPLOAD_", "JWT_"))}
    env.update(ENVIRONMENT="test", JWT_SECRET=TEST_SECRET)
    return subprocess.run(
        [*CLI, "upload", "--direct", "--url", server.url, "--sub", "alice", *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=180,
        check=False,
    )


def printed(result: subprocess.CompletedProcess[str]) -> dict[str, tuple[str, str]]:
    """path -> (doc_id, status) from the command's output lines."""
    lines = [line.split("\t") for line in result.stdout.strip().splitlines()]
    return {path: (doc_id, status) for doc_id, status, path in lines}


def test_direct_upload_sends_small_and_large_files_and_refuses_a_wrong_one(
    direct_server: LiveServer, tmp_path: Path, s3_client: S3Client, s3_bucket: str
) -> None:
    small = tmp_path / "small.pdf"
    small.write_bytes(pdf_bytes("Small"))
    large = tmp_path / "large.pdf"
    large.write_bytes(pdf_bytes("Large", pad=10 * MIB))
    wrong = tmp_path / "wrong.pdf"
    wrong.write_bytes(b"not a pdf at all")
    state = tmp_path / "state"
    result = run_cli(
        direct_server, tmp_path, str(small), str(large), str(wrong), "--state-dir", str(state)
    )
    assert result.returncode == 1, result.stderr  # one file refused
    assert "UNSUPPORTED_FILE_TYPE" in result.stderr
    assert "Traceback" not in result.stderr
    outcomes = printed(result)
    token = mint_token(TEST_SECRET, "alice")
    for path in (small, large):
        doc_id, status = outcomes[str(path)]
        assert status == "queued"
        document = httpx.get(
            f"{direct_server.url}/v1/documents/{doc_id}",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert document["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert all(key.startswith("raw/") for key in keys)
    assert len(keys) == 2
    assert list((state / "direct").glob("*.json")) == []  # nothing left to resume


def test_an_interrupted_direct_upload_resumes_with_the_parts_s3_holds(
    direct_server: LiveServer, tmp_path: Path
) -> None:
    large = tmp_path / "resume.pdf"
    content = pdf_bytes("Resume", pad=10 * MIB)
    large.write_bytes(content)
    state = tmp_path / "state"
    token = mint_token(TEST_SECRET, "alice")
    api = httpx.Client(base_url=direct_server.url, headers={"Authorization": f"Bearer {token}"})
    with api:
        # A first run that sent part 1 and then died: its upload id is in the state file.
        declared: dict[str, Any] = api.post(
            "/v1/uploads/direct",
            json={
                "filename": large.name,
                "size": len(content),
                "content_type": "application/pdf",
                "sha256": hashlib.sha256(content).hexdigest(),
            },
        ).json()
        upload_id = declared["upload_id"]
        [first] = api.post(
            f"/v1/uploads/direct/{upload_id}/parts", json={"part_numbers": [1]}
        ).json()["parts"]
        assert httpx.put(first["url"], content=content[: first["size"]]).status_code == 200
        _StateFile(state / "direct", large).save(upload_id)
        assert (
            json.loads(next((state / "direct").glob("*.json")).read_text())["upload_id"]
            == upload_id
        )

        result = run_cli(direct_server, tmp_path, str(large), "--state-dir", str(state))
        assert result.returncode == 0, result.stderr
        [(doc_id, _status)] = printed(result).values()
        finished = api.get(f"/v1/uploads/direct/{upload_id}").json()
    # The same upload was completed (not a new one): the CLI resumed it.
    assert finished["state"] == "completed"
    assert finished["doc_id"] == doc_id

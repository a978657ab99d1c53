"""Stalled clients over real HTTP: they are cut off and cannot starve anyone meanwhile.

A real server with the smallest budget (16 MiB: two 8 MiB S3 parts) and a short idle timeout.
More clients than the budget has parts send their headers and the start of a file, then fall
silent. Meanwhile a new small upload completes at once and readiness stays green; after
`UPLOAD_IDLE_TIMEOUT_S` each stalled client gets 408 `UPLOAD_TIMEOUT`, nothing of theirs is
left in storage, and the whole budget is free again for uploads that need all of it.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from mypy_boto3_s3 import S3Client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.raw_http import parse_response, read_response, request_head
from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken
from tests.integration.documents.conftest import MULTIPART, count_rows, multipart, pdf_bytes
from upload_service.db.models import Document

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
IDLE_TIMEOUT_S = 3
STALLED = 4  # two more than the budget has parts
PROMPTLY_S = 1.5  # well under the idle timeout: nobody waited for a stalled client to go


def stall(port: int, token: str) -> socket.socket:
    """Start a 5 MiB upload, send its first 100 KiB, and go silent (the socket stays open)."""
    body = multipart(("file", "stalled.pdf", pdf_bytes(pad=5 * MIB)))
    head = request_head(
        "POST",
        "/v1/documents",
        port,
        {
            "Authorization": f"Bearer {token}",
            "Content-Type": MULTIPART,
            "Content-Length": str(len(body)),
        },
    )
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(head + body[: 100 * 1024])
    return sock


def upload(server: LiveServer, token: str, size: int) -> httpx.Response:
    files = {"file": ("fresh.pdf", pdf_bytes(pad=size), "application/pdf")}
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.post(f"{server.url}/v1/documents", files=files, headers=headers, timeout=30)


def run_stalled_clients_scenario(
    server: LiveServer, token: str, stored: Callable[[], list[str]]
) -> list[str]:
    """The scenario on either backend; returns the ids of the documents it created."""
    stalled = [stall(server.port, token) for _ in range(STALLED)]
    try:
        time.sleep(0.5)  # the stalled uploads are in, holding what they hold
        started = time.monotonic()
        fresh = upload(server, token, 10)
        assert fresh.status_code == 202, fresh.text
        assert time.monotonic() - started < PROMPTLY_S
        assert httpx.get(f"{server.url}/readiness", timeout=5).status_code == 200

        for sock in stalled:
            status, _, body = parse_response(read_response(sock, timeout_s=IDLE_TIMEOUT_S + 10))
            assert status == 408, body
            assert body["error_code"] == "UPLOAD_TIMEOUT"
    finally:
        for sock in stalled:
            sock.close()

    # The whole budget is back: two uploads of more than a part each, at once.
    with ThreadPoolExecutor(2) as pool:
        big = list(pool.map(lambda _: upload(server, token, 10 * MIB), range(2)))
    assert [response.status_code for response in big] == [202, 202]
    doc_ids = [fresh.json()["doc_id"], *(response.json()["doc_id"] for response in big)]
    assert sorted(stored()) == sorted(f"raw/{doc_id}.pdf" for doc_id in doc_ids)
    return doc_ids


def server_env(database_env: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        "ENVIRONMENT": "test",
        **database_env,
        "JWT_SECRET": TEST_SECRET,
        "WORKER_ENABLED": "false",
        "UPLOAD_BUFFER_BUDGET_MB": "16",
        "UPLOAD_IDLE_TIMEOUT_S": str(IDLE_TIMEOUT_S),
        **extra,
    }


async def test_stalled_clients_on_s3_are_cut_off_and_starve_nobody(
    live_server: Callable[..., LiveServer],
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    make_token: MakeToken,
    pg_clean: AsyncEngine,
    database_env: dict[str, str],
) -> None:
    server = live_server(
        server_env(
            database_env,
            STORAGE_BACKEND="s3",
            S3_BUCKET=s3_bucket,
            S3_ENDPOINT_URL=moto_server,
            S3_REGION="us-east-1",
        )
    )

    def stored() -> list[str]:
        listing = s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])
        return [item["Key"] for item in listing]

    run_stalled_clients_scenario(server, make_token("user-a"), stored)

    assert not s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    assert await count_rows(pg_clean, Document) == 3


async def test_stalled_clients_on_local_storage_are_cut_off_and_starve_nobody(
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: AsyncEngine,
    database_env: dict[str, str],
    tmp_path: Path,
) -> None:
    root = tmp_path / "storage"
    server = live_server(server_env(database_env, LOCAL_STORAGE_DIR=str(root)))

    def stored() -> list[str]:
        # Every file, temporary ones (dot-named) included: none may be left.
        return [path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file()]

    run_stalled_clients_scenario(server, make_token("user-a"), stored)

    assert await count_rows(pg_clean, Document) == 3

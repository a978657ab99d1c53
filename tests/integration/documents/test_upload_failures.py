"""All or nothing: S3 uploads; each failure leaves no document, object or multipart upload."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from mypy_boto3_s3 import S3Client
from mypy_boto3_s3.type_defs import CompletedPartTypeDef
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import TEST_SECRET, LiveServer, MakeSettings, MakeToken, running_app
from tests.fixtures.network import TcpProxy
from tests.integration.documents.conftest import MULTIPART, count_rows, multipart, pdf_bytes
from upload_service.db.models import Document, Job
from upload_service.errors import StorageUnavailable
from upload_service.main import create_app
from upload_service.storage.budget import BufferBudget
from upload_service.storage.s3 import S3Storage

MIB = 1024 * 1024


def s3_settings(make_settings: MakeSettings, moto_server: str, bucket: str, **extra: object):  # type: ignore[no-untyped-def]
    return make_settings(
        storage_backend="s3",
        s3_bucket=bucket,
        s3_endpoint_url=moto_server,
        s3_region="us-east-1",
        **extra,
    )


def bucket_is_empty(s3: S3Client, bucket: str) -> bool:
    objects = s3.list_objects_v2(Bucket=bucket).get("KeyCount", 0)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return objects == 0 and not uploads


class FailingOnPart(S3Storage):
    """S3 storage whose Nth part upload fails, as a dropped connection to S3 would."""

    fail_on = 2

    async def _upload_part(
        self, key: str, upload_id: str, part_number: int, body: bytes | bytearray
    ) -> CompletedPartTypeDef:
        if part_number == self.fail_on:
            raise StorageUnavailable()
        return await super()._upload_part(key, upload_id, part_number, body)


async def test_large_upload_goes_to_s3_in_parts(
    make_settings: MakeSettings,
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
) -> None:
    content = pdf_bytes(pad=20 * MIB)
    async with running_app(
        create_app(s3_settings(make_settings, moto_server, s3_bucket))
    ) as client:
        response = await client.post(
            "/v1/documents", files={"file": ("big.pdf", content)}, headers=auth_headers
        )
        assert response.status_code == 202, response.text
        key = response.json()["storage_key"]
        stored = s3_client.get_object(Bucket=s3_bucket, Key=key)
        assert stored["Body"].read() == content
        assert "-" in stored["ETag"]  # A multipart ETag: the bytes went up in parts.
        download = await client.get(
            f"/v1/documents/{response.json()['doc_id']}/content",
            headers={**auth_headers, "Range": "bytes=0-4"},
        )
        assert download.content == b"%PDF-"
    assert await count_rows(pg_clean, Document) == 1


async def test_storage_failure_on_a_part_leaves_nothing(
    make_settings: MakeSettings,
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
) -> None:
    app = create_app(s3_settings(make_settings, moto_server, s3_bucket))
    async with running_app(app) as client:
        resources = app.state.resources
        await resources.storage.aclose()
        resources.storage = FailingOnPart(
            s3_bucket, moto_server, "us-east-1", BufferBudget(64 * MIB)
        )
        response = await client.post(
            "/v1/documents",
            files={"file": ("big.pdf", pdf_bytes(pad=20 * MIB))},
            headers=auth_headers,
        )
    assert response.status_code == 503
    assert response.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["retry-after"]
    assert bucket_is_empty(s3_client, s3_bucket)
    assert await count_rows(pg_clean, Document) == 0
    assert await count_rows(pg_clean, Job) == 0


async def test_database_failure_at_commit_deletes_the_object(
    make_settings: MakeSettings,
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    pg_url: str,
) -> None:
    url = make_url(pg_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    proxied = url.set(port=proxy.port).render_as_string(hide_password=False)
    app = create_app(s3_settings(make_settings, moto_server, s3_bucket, database_url=proxied))
    payload = multipart(("file", "big.pdf", pdf_bytes(pad=12 * MIB)))

    async def body_that_cuts_the_database() -> AsyncIterator[bytes]:
        for start in range(0, len(payload), MIB):
            if start == 4 * MIB:
                await proxy.stop()  # The database goes away while the file is streaming.
            yield payload[start : start + MIB]

    try:
        async with running_app(app) as client:
            response = await client.post(
                "/v1/documents",
                content=body_that_cuts_the_database(),
                # The key makes the service touch the database before streaming, so a pooled
                # connection exists and dies mid-request, as in a real outage.
                headers={**auth_headers, "Content-Type": MULTIPART, "Idempotency-Key": "db-cut"},
            )
    finally:
        await proxy.stop()
    assert response.status_code == 503, response.text
    assert response.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert "postgres" not in response.text
    assert bucket_is_empty(s3_client, s3_bucket)
    assert await count_rows(pg_clean, Document) == 0
    assert await count_rows(pg_clean, Job) == 0


@pytest.mark.e2e
async def test_client_disconnect_mid_body_leaves_nothing(
    live_server: Callable[..., LiveServer],
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    make_token: MakeToken,
    pg_clean: AsyncEngine,
    database_env: dict[str, str],
    tmp_path: Path,
) -> None:
    server = live_server(
        {
            "ENVIRONMENT": "test",
            **database_env,
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": s3_bucket,
            "S3_ENDPOINT_URL": moto_server,
            "S3_REGION": "us-east-1",
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
        }
    )
    payload = multipart(("file", "big.pdf", pdf_bytes(pad=30 * MIB)))
    head = (
        f"POST /v1/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {make_token('user-a')}\r\nContent-Type: {MULTIPART}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(head + payload[: 20 * MIB])  # Two 8 MiB parts are on their way to S3.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not s3_client.list_multipart_uploads(
            Bucket=s3_bucket
        ).get("Uploads"):
            await asyncio.sleep(0.05)
        assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads")
    # The socket is closed: the server sees the disconnect and must clean up after itself.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and not bucket_is_empty(s3_client, s3_bucket):
        await asyncio.sleep(0.1)
    assert bucket_is_empty(s3_client, s3_bucket)
    assert await count_rows(pg_clean, Document) == 0
    assert httpx.get(f"{server.url}/health").status_code == 200

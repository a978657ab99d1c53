"""What only a real S3 enforces of what direct uploads sign: run against a bucket of yours.

moto checks no policy, signature, expiry or checksum, so these run only where a real endpoint is
configured, and are skipped otherwise:

    REAL_S3_BUCKET=my-scratch-bucket REAL_S3_REGION=eu-west-1 \\
    REAL_S3_ACCESS_KEY_ID=… REAL_S3_SECRET_ACCESS_KEY=… [REAL_S3_ENDPOINT_URL=https://…] \\
    .venv/bin/pytest -m real_s3 tests/integration/documents/direct/test_direct_real_s3.py

Run them alone: the moto fixtures replace the process's AWS credentials with dummies. Every test
writes under `staging/real-s3-tests/` and removes what it wrote.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from upload_service.storage.budget import BufferBudget
from upload_service.storage.direct import HeldPart, PartsRefused
from upload_service.storage.s3 import S3Storage
from upload_service.storage.s3_direct import S3DirectUploads

BUCKET = os.environ.get("REAL_S3_BUCKET")
MIB = 1024 * 1024

pytestmark = [
    pytest.mark.real_s3,
    pytest.mark.skipif(not BUCKET, reason="no real S3 endpoint configured (REAL_S3_BUCKET)"),
]


@pytest.fixture
async def real(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[S3Storage, S3DirectUploads]]:
    assert BUCKET is not None
    for name in ("ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"):
        value = os.environ.get(f"REAL_S3_{name}")
        if value:
            monkeypatch.setenv(f"AWS_{name}", value)
        else:
            monkeypatch.delenv(f"AWS_{name}", raising=False)
    endpoint = os.environ.get("REAL_S3_ENDPOINT_URL")
    region = os.environ.get("REAL_S3_REGION", "us-east-1")
    storage = S3Storage(BUCKET, endpoint, region, BufferBudget(64 * MIB))
    yield storage, S3DirectUploads(storage, endpoint, region)
    await storage.aclose()


def key() -> str:
    return f"staging/real-s3-tests/{uuid.uuid4().hex}"


async def test_policy_refuses_a_body_over_the_declared_size(
    real: tuple[S3Storage, S3DirectUploads],
) -> None:
    storage, direct = real
    target = key()
    post = direct.presign_post(
        target, max_size=100, content_type="application/pdf", sha256_b64=None, ttl_s=300
    )
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(post.url, data=post.fields, files={"file": ("f", b"x" * 101)})
    assert sent.status_code == 400
    assert "EntityTooLarge" in sent.text
    assert not await storage.exists(target)


async def test_policy_refuses_another_key(real: tuple[S3Storage, S3DirectUploads]) -> None:
    storage, direct = real
    target = key()
    post = direct.presign_post(
        target, max_size=100, content_type="application/pdf", sha256_b64=None, ttl_s=300
    )
    fields = {**post.fields, "key": key()}
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(post.url, data=fields, files={"file": ("f", b"x" * 10)})
    assert sent.status_code == 403
    assert not await storage.exists(fields["key"])


async def test_post_with_a_declared_sha256_refuses_other_bytes(
    real: tuple[S3Storage, S3DirectUploads],
) -> None:
    storage, direct = real
    target = key()
    digest = base64.b64encode(hashlib.sha256(b"declared").digest()).decode()
    post = direct.presign_post(
        target, max_size=100, content_type="application/pdf", sha256_b64=digest, ttl_s=300
    )
    async with httpx.AsyncClient(timeout=30) as http:
        sent = await http.post(post.url, data=post.fields, files={"file": ("f", b"different")})
    assert sent.status_code == 400
    assert not await storage.exists(target)


async def test_copy_out_of_staging_yields_the_whole_files_sha256(
    real: tuple[S3Storage, S3DirectUploads],
) -> None:
    storage, direct = real
    source, target = key(), key()
    content = b"%PDF-1.4 " + os.urandom(2048)
    post = direct.presign_post(
        source, max_size=len(content), content_type="application/pdf", sha256_b64=None, ttl_s=300
    )
    try:
        async with httpx.AsyncClient(timeout=30) as http:
            sent = await http.post(post.url, data=post.fields, files={"file": ("f", content)})
        assert sent.status_code in (200, 201, 204), sent.text
        assert await direct.copy_hashed(source, target) == hashlib.sha256(content).hexdigest()
    finally:
        await storage.delete(source)
        await storage.delete(target)


async def test_a_part_url_refuses_another_length_and_expires(
    real: tuple[S3Storage, S3DirectUploads],
) -> None:
    _storage, direct = real
    target = key()
    multipart_id = await direct.start_multipart(target, "application/pdf")
    try:
        url = direct.presign_part(target, multipart_id, 1, 5 * MIB, 300)
        short_lived = direct.presign_part(target, multipart_id, 2, 10, 1)
        async with httpx.AsyncClient(timeout=60) as http:
            longer = await http.put(url, content=b"x" * (5 * MIB + 1))
            assert longer.status_code == 403  # content-length is signed
            await asyncio.sleep(2)
            expired = await http.put(short_lived, content=b"y" * 10)
            assert expired.status_code == 403
            exact = await http.put(url, content=b"x" * (5 * MIB))
            assert exact.status_code == 200
        held = await direct.held_parts(target, multipart_id)
        assert held == [HeldPart(1, 5 * MIB, exact.headers["etag"])]
        # MpuObjectSize: S3 refuses to assemble parts that do not add up to the declared size.
        with pytest.raises(PartsRefused):
            await direct.finish_multipart(target, multipart_id, held, 5 * MIB + 1)
    finally:
        await direct.abort_multipart(target, multipart_id)

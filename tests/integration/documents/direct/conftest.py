"""Direct uploads against moto's S3 server and the run's PostgreSQL: an app, and a client that
sends bytes to S3 the way a browser or the CLI would (plain HTTP to the presigned URLs)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from mypy_boto3_s3 import S3Client
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from upload_service.main import create_app

MIB = 1024 * 1024


@dataclass
class DirectBench:
    """The app's client, a plain HTTP client for S3, the bucket, and a user's headers."""

    api: httpx.AsyncClient
    s3_http: httpx.AsyncClient
    s3: S3Client
    bucket: str
    headers: dict[str, str]

    async def declare(self, filename: str, content: bytes, **extra: Any) -> httpx.Response:
        body = {
            "filename": filename,
            "size": len(content),
            "content_type": "application/octet-stream",
        }
        body.update(extra)
        return await self.api.post("/v1/uploads/direct", json=body, headers=self.headers)

    async def post_file(self, declared: dict[str, Any], content: bytes) -> httpx.Response:
        post = declared["post"]
        return await self.s3_http.post(
            post["url"], data=post["fields"], files={"file": ("blob", content)}
        )

    async def sign(self, upload_id: str, numbers: list[int]) -> list[dict[str, Any]]:
        response = await self.api.post(
            f"/v1/uploads/direct/{upload_id}/parts",
            json={"part_numbers": numbers},
            headers=self.headers,
        )
        assert response.status_code == 200, response.text
        parts: list[dict[str, Any]] = response.json()["parts"]
        return parts

    async def put_part(self, url: str, body: bytes) -> str:
        response = await self.s3_http.put(url, content=body)
        assert response.status_code == 200, response.text
        return response.headers["etag"]

    async def complete(self, upload_id: str, **body: Any) -> httpx.Response:
        return await self.api.post(
            f"/v1/uploads/direct/{upload_id}/complete", json=body or None, headers=self.headers
        )

    def keys(self, prefix: str = "") -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix)
        return [item["Key"] for item in listed.get("Contents", [])]

    def open_multipart_uploads(self) -> int:
        return len(self.s3.list_multipart_uploads(Bucket=self.bucket).get("Uploads", []))


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


@pytest.fixture
def direct_settings(make_settings: MakeSettings, moto_server: str, s3_bucket: str) -> MakeSettings:
    def make(**overrides: Any) -> Any:
        values: dict[str, Any] = {
            "storage_backend": "s3",
            "s3_bucket": s3_bucket,
            "s3_endpoint_url": moto_server,
            "s3_region": "us-east-1",
            "direct_single_max_mb": 1,
            "max_file_size_mb": 64,
        }
        values.update(overrides)
        return make_settings(**values)

    return make


@pytest.fixture
async def bench(
    direct_settings: MakeSettings,
    s3_client: S3Client,
    s3_bucket: str,
    make_token: MakeToken,
    pg_clean: AsyncEngine,
) -> AsyncIterator[DirectBench]:
    async with (
        running_app(create_app(direct_settings())) as api,
        httpx.AsyncClient(timeout=60, trust_env=False) as s3_http,
    ):
        yield DirectBench(
            api=api,
            s3_http=s3_http,
            s3=s3_client,
            bucket=s3_bucket,
            headers={"Authorization": f"Bearer {make_token('user-a')}"},
        )

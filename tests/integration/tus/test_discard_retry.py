"""An ended upload leaves nothing in storage even when its first discard fails: the janitor
discards again, and the upload answers 410 all along."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, running_app
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.security.conftest import assert_envelope
from tests.integration.tus.conftest import TUS, create_upload, head, patch, upload_row
from tests.integration.tus.test_recovery import _expire
from upload_service.errors import StorageUnavailable
from upload_service.jobs.upload_expiry import expire_uploads, finish_discards
from upload_service.main import create_app
from upload_service.storage.budget import BufferBudget
from upload_service.storage.local import LocalStorage
from upload_service.storage.partial import Appender, PartialObjects, PartialState
from upload_service.storage.s3 import S3Storage

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

CONTENT = pdf_bytes(pad=300_000)
HALF = len(CONTENT) // 2


class DiscardFailsOnce:
    """Partial objects whose first discard fails, as a storage outage would; all else passes."""

    def __init__(self, inner: PartialObjects) -> None:
        self._inner = inner
        self.failures = 0

    async def begin(self, key: str) -> PartialState:
        return await self._inner.begin(key)

    async def append(self, key: str, state: PartialState, offset: int) -> Appender:
        return await self._inner.append(key, state, offset)

    async def finish(self, key: str, state: PartialState) -> None:
        await self._inner.finish(key, state)

    async def discard(self, key: str, state: PartialState) -> None:
        if self.failures == 0:
            self.failures += 1
            raise StorageUnavailable()
        await self._inner.discard(key, state)


class LocalDiscardFailsOnce(LocalStorage):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.flaky = DiscardFailsOnce(super().partial_objects)

    @property
    def partial_objects(self) -> DiscardFailsOnce:  # type: ignore[override]
        return self.flaky


class S3DiscardFailsOnce(S3Storage):
    def __init__(self, bucket: str, endpoint: str) -> None:
        super().__init__(bucket, endpoint, "us-east-1", BufferBudget.from_megabytes(64))
        self.flaky = DiscardFailsOnce(super().partial_objects)

    @property
    def partial_objects(self) -> DiscardFailsOnce:  # type: ignore[override]
        return self.flaky


def partial_files(storage_root: Path) -> list[Path]:
    partial = storage_root / ".partial"
    return [p for p in partial.rglob("*") if p.is_file()] if partial.exists() else []


async def assert_gone(client: httpx.AsyncClient, headers: dict[str, str], location: str) -> None:
    assert (await head(client, headers, location)).status_code == 410  # A HEAD has no body.
    assert_envelope(await patch(client, headers, location, HALF, b"x"), 410, "UPLOAD_GONE")
    assert_envelope(await client.delete(location, headers={**headers, **TUS}), 410, "UPLOAD_GONE")


async def test_a_terminated_upload_whose_discard_failed_is_discarded_by_the_janitor(
    make_settings: MakeSettings,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    tmp_path: Path,
) -> None:
    root = tmp_path / "storage"
    app = create_app(make_settings(local_storage_dir=root))
    async with running_app(app) as client:
        resources = app.state.resources
        await resources.storage.aclose()
        storage = resources.storage = LocalDiscardFailsOnce(root)
        location = await create_upload(client, auth_headers, len(CONTENT))
        assert (await patch(client, auth_headers, location, 0, CONTENT[:HALF])).status_code == 204
        deleted = await client.delete(location, headers={**auth_headers, **TUS})
        assert deleted.status_code == 204, deleted.text  # Terminated; the bytes are the janitor's.
        assert storage.flaky.failures == 1
        assert len(partial_files(root)) == 1
        await assert_gone(client, auth_headers, location)

        assert await finish_discards(pg_clean, storage) == 1
        assert partial_files(root) == []
        row = await upload_row(pg_clean, location)
        assert row is not None
        assert row.state == "terminated"
        await assert_gone(client, auth_headers, location)
        assert await finish_discards(pg_clean, storage) == 0  # Nothing left to do.


async def test_an_expired_upload_whose_discard_failed_is_discarded_on_the_next_pass(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine, tmp_path: Path
) -> None:
    root = tmp_path / "storage"
    storage = LocalDiscardFailsOnce(root)
    location = await create_upload(client, auth_headers, len(CONTENT))
    await patch(client, auth_headers, location, 0, CONTENT[:HALF])
    await _expire(pg_clean, location)
    assert await expire_uploads(pg_clean, storage) == 1
    assert len(partial_files(root)) == 1  # The discard failed: it stays `expiring`.
    await assert_gone(client, auth_headers, location)
    assert await expire_uploads(pg_clean, storage) == 0  # Expired once only...
    assert await finish_discards(pg_clean, storage) == 1  # ...and its bytes go now.
    assert partial_files(root) == []
    row = await upload_row(pg_clean, location)
    assert row is not None
    assert row.state == "expired"
    await assert_gone(client, auth_headers, location)


async def test_on_s3_the_multipart_upload_of_a_terminated_upload_is_aborted_on_a_retry(
    make_settings: MakeSettings,
    moto_server: str,
    s3_bucket: str,
    s3_client: S3Client,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
) -> None:
    app = create_app(
        make_settings(
            storage_backend="s3",
            s3_bucket=s3_bucket,
            s3_endpoint_url=moto_server,
            s3_region="us-east-1",
        )
    )
    async with running_app(app) as client:
        resources = app.state.resources
        await resources.storage.aclose()
        storage = resources.storage = S3DiscardFailsOnce(s3_bucket, moto_server)
        location = await create_upload(client, auth_headers, len(CONTENT))
        assert (await patch(client, auth_headers, location, 0, CONTENT[:HALF])).status_code == 204
        deleted = await client.delete(location, headers={**auth_headers, **TUS})
        assert deleted.status_code == 204, deleted.text
        assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", [])
        await assert_gone(client, auth_headers, location)
        assert await finish_discards(pg_clean, storage) == 1
        await assert_gone(client, auth_headers, location)
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []
    assert s3_client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0

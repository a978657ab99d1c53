"""Probes: liveness touches nothing; readiness follows the database and storage for real."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlalchemy.engine import make_url

from tests.fixtures.app import MakeSettings, running_app
from tests.fixtures.network import TcpProxy
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.jobs.support import wait_for
from tests.integration.security.conftest import assert_envelope
from upload_service.db.migrate import upgrade_to_head
from upload_service.main import create_app

SCHEMA_BEHIND = "error: schema not at head, run upload-service migrate"


async def test_health_is_alive_without_touching_dependencies(make_settings: MakeSettings) -> None:
    dead_db = "postgresql+asyncpg://postgres@127.0.0.1:1/nothing"
    async with running_app(create_app(make_settings(database_url=dead_db))) as client:
        response = await client.get("/health")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json().keys() == {"status", "timestamp"}
    assert response.json()["status"] == "alive"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", response.json()["timestamp"])
    stamped = datetime.strptime(response.json()["timestamp"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs((datetime.now(UTC) - stamped).total_seconds()) < 5


async def test_readiness_follows_the_database_down_and_up(
    make_settings: MakeSettings, pg_url: str, db_proxy: TcpProxy
) -> None:
    proxied = make_url(pg_url).set(port=db_proxy.port).render_as_string(hide_password=False)
    settings = make_settings(database_url=proxied, readiness_timeout_s=1)
    async with running_app(create_app(settings)) as client:
        ready = await client.get("/readiness")
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
        assert ready.json()["checks"]["database"] == "ok"
        assert ready.json()["checks"]["storage"] == "ok"

        await db_proxy.stop()
        down = await client.get("/readiness")
        assert down.status_code == 503
        assert down.json()["status"] == "not_ready"
        assert down.json()["checks"]["database"].startswith("error: ")
        assert len(down.json()["checks"]["database"]) <= 100
        assert "postgres@" not in down.text

        await db_proxy.start()
        again = await client.get("/readiness")
        assert again.status_code == 200, again.text


async def test_readiness_follows_s3_storage_down_and_up(
    make_settings: MakeSettings, moto_server: str, s3_bucket: str
) -> None:
    endpoint = urlsplit(moto_server)
    proxy = TcpProxy(endpoint.hostname or "127.0.0.1", endpoint.port or 80)
    await proxy.start()
    settings = make_settings(
        storage_backend="s3",
        s3_bucket=s3_bucket,
        s3_endpoint_url=f"http://127.0.0.1:{proxy.port}",
        s3_region="us-east-1",
        readiness_timeout_s=2,
    )
    try:
        async with running_app(create_app(settings)) as client:
            assert (await client.get("/readiness")).status_code == 200
            await proxy.stop()
            down = await client.get("/readiness")
            assert down.status_code == 503
            assert down.json()["checks"]["storage"].startswith("error: ")
            assert down.json()["checks"]["database"] == "ok"
            await proxy.start()
            assert (await client.get("/readiness")).status_code == 200
    finally:
        await proxy.stop()


async def test_readiness_is_503_while_shutting_down(make_settings: MakeSettings) -> None:
    app = create_app(make_settings())
    async with running_app(app) as client:
        app.state.resources.shutting_down = True
        response = await client.get("/readiness")
    assert response.status_code == 503
    assert response.json()["status"] == "shutting_down"


async def test_reads_answer_503_while_the_database_is_down_and_recover(
    make_settings: MakeSettings,
    pg_url: str,
    db_proxy: TcpProxy,
    auth_headers: dict[str, str],
) -> None:
    proxied = make_url(pg_url).set(port=db_proxy.port).render_as_string(hide_password=False)
    async with running_app(create_app(make_settings(database_url=proxied))) as client:
        uploaded = await client.post(
            "/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=auth_headers
        )
        assert uploaded.status_code == 202, uploaded.text
        doc_id = uploaded.json()["doc_id"]
        assert (await client.get(f"/v1/documents/{doc_id}", headers=auth_headers)).is_success

        await db_proxy.stop()  # Pooled connections are cut too.
        for path in (f"/v1/documents/{doc_id}", "/v1/documents"):
            down = await client.get(path, headers=auth_headers)
            body = assert_envelope(down, 503, "SERVICE_UNAVAILABLE")
            assert int(down.headers["retry-after"]) >= 1
            assert "postgres" not in body["message"]

        await db_proxy.start()
        again = await client.get(f"/v1/documents/{doc_id}", headers=auth_headers)
        assert again.status_code == 200, again.text


async def test_a_schema_behind_head_is_not_ready_until_migrated_without_a_restart(
    make_settings: MakeSettings, pg_unmigrated_url: str, auth_headers: dict[str, str]
) -> None:
    settings = make_settings(database_url=pg_unmigrated_url)
    async with running_app(create_app(settings)) as client:
        behind = await client.get("/readiness")
        assert behind.status_code == 503
        assert behind.json()["status"] == "not_ready"
        assert behind.json()["checks"]["database"] == SCHEMA_BEHIND
        assert behind.json()["checks"]["storage"] == "ok"
        # Every way a route reaches the database: the upload's transaction, a read, a session.
        for refused in (
            await client.post(
                "/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=auth_headers
            ),
            await client.get("/v1/documents", headers=auth_headers),
            await client.get("/v1/tasks/01J0000000000000000000000", headers=auth_headers),
        ):
            body = assert_envelope(refused, 503, "SERVICE_UNAVAILABLE")
            assert "schema is not at head" in body["message"]
            assert "upload-service migrate" in body["message"]
            assert int(refused.headers["retry-after"]) >= 1
        assert not list((settings.local_storage_dir).rglob("*.pdf"))  # Refused before storing.

        await asyncio.to_thread(upgrade_to_head, pg_unmigrated_url)  # `upload-service migrate`

        async def readiness() -> int:
            return (await client.get("/readiness")).status_code

        await wait_for(readiness, lambda status: status == 200, timeout_s=10, interval_s=0.2)
        uploaded = await client.post(
            "/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=auth_headers
        )
        assert uploaded.status_code == 202, uploaded.text
        listed = await client.get("/v1/documents", headers=auth_headers)
        assert listed.status_code == 200, listed.text

"""Per-user rate limits: 429 with Retry-After past the budget, figures on every limited answer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.fixtures.network import TcpProxy
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.security.conftest import assert_envelope, bearer
from upload_service.config import ConfigurationError
from upload_service.edge.rate_limits import PAUSE_AFTER_FAILURE_S
from upload_service.main import create_app

LIMIT_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset")


@asynccontextmanager
async def limited(
    make_settings: MakeSettings, **overrides: Any
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with the given limits (generous defaults for whatever is not under test)."""
    values: dict[str, Any] = {"upload_rate_limit": "1000/minute", "query_rate_limit": "1000/minute"}
    values.update(overrides)
    async with running_app(create_app(make_settings(**values))) as client:
        yield client


async def upload(client: httpx.AsyncClient, headers: dict[str, str]) -> httpx.Response:
    return await client.post(
        "/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=headers
    )


def figures(response: httpx.Response) -> tuple[int, int, int]:
    """(limit, remaining, reset) from the response's headers."""
    limit, remaining, reset = (int(response.headers[name]) for name in LIMIT_HEADERS)
    return limit, remaining, reset


async def test_the_upload_after_the_budget_is_429_with_headers(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    alice = bearer(make_token("user-a"))
    async with limited(make_settings, upload_rate_limit="3/minute") as client:
        for expected_remaining in (2, 1, 0):
            response = await upload(client, alice)
            assert response.status_code == 202, response.text
            limit, remaining, reset = figures(response)
            assert (limit, remaining) == (3, expected_remaining)
            assert time.time() < reset <= time.time() + 61

        refused = await upload(client, alice)
        assert_envelope(refused, 429, "RATE_LIMITED")
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert figures(refused)[:2] == (3, 0)

        listing = await client.get("/v1/documents", headers=alice)
        assert len(listing.json()["items"]) == 3  # The refused upload stored nothing.
        assert figures(listing)[0] == 1000  # Queries spend their own budget.

        other = await upload(client, bearer(make_token("user-b")))
        assert other.status_code == 202  # Per user: bob is not alice.


async def test_the_query_after_the_budget_is_429(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    alice = bearer(make_token("user-a"))
    async with limited(make_settings, query_rate_limit="2/minute") as client:
        assert (await client.get("/v1/documents", headers=alice)).status_code == 200
        assert (await client.get("/v1/documents/doc_x", headers=alice)).status_code == 404
        refused = await client.post(
            "/v1/documents/batch-check", json={"doc_ids": ["doc_x"]}, headers=alice
        )
        assert_envelope(refused, 429, "RATE_LIMITED")
        assert "retry-after" in refused.headers
        assert (await upload(client, alice)).status_code == 202


async def test_every_answer_of_a_limited_route_carries_the_figures(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    alice = bearer(make_token("user-a"))
    async with limited(make_settings, query_rate_limit="50/minute") as client:
        created = await upload(client, alice)
        doc_id = created.json()["doc_id"]
        answers = [
            created,
            await client.get(f"/v1/documents/{doc_id}", headers=alice),
            await client.get(f"/v1/documents/{doc_id}/content", headers=alice),  # streamed
            await client.get(f"/v1/documents/{doc_id}/content", headers=alice | {"Range": "x"}),
            await client.get("/v1/documents/doc_unknown", headers=alice),  # 404
            await client.get("/v1/documents", params={"limit": 0}, headers=alice),  # 422
            await client.post("/v1/documents", content=b"junk", headers=alice),  # 400 or 422
            await client.delete(f"/v1/documents/{doc_id}", headers=alice),  # 204
        ]
        for response in answers:
            assert all(name in response.headers for name in LIMIT_HEADERS), (
                response.status_code,
                response.request.url,
            )
        remaining = [figures(r)[1] for r in answers[1:-2]]
        assert remaining == sorted(remaining, reverse=True)
        assert {r.status_code for r in answers} >= {200, 202, 204, 404, 422}


async def test_unauthenticated_requests_do_not_spend_anyones_budget(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    async with limited(make_settings, query_rate_limit="1/minute") as client:
        for token in ("garbage", make_token("user-a")[:-4] + "AAAA"):
            for _ in range(5):
                response = await client.get("/v1/documents", headers=bearer(token))
                assert response.status_code == 401
                assert "x-ratelimit-limit" not in response.headers
        ok = await client.get("/v1/documents", headers=bearer(make_token("user-a")))
        assert ok.status_code == 200
        assert figures(ok)[:2] == (1, 0)


async def test_probes_are_not_limited(make_settings: MakeSettings) -> None:
    async with limited(make_settings, query_rate_limit="1/minute") as client:
        for _ in range(3):
            response = await client.get("/health")
            assert response.status_code == 200
            assert "x-ratelimit-limit" not in response.headers


# -- Redis: one budget for every process, and a Redis outage is not a service outage --------


def _via(redis_url: str, port: int) -> str:
    parts = urlsplit(redis_url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


async def test_apps_sharing_redis_share_one_budget(
    make_settings: MakeSettings, make_token: MakeToken, redis_url: str, redis_prefix: str
) -> None:
    alice = bearer(make_token(f"user-{uuid.uuid4().hex[:8]}"))
    shared = {
        "rate_limit_storage_url": redis_url,
        "rate_limit_key_prefix": redis_prefix,
        "query_rate_limit": "4/minute",
    }
    async with (
        limited(make_settings, **shared) as first,
        limited(make_settings, **shared) as second,
    ):
        statuses = [
            (await client.get("/v1/documents", headers=alice)).status_code
            for client in (first, second, first, second, first, second)
        ]
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_redis_down_keeps_serving_and_readiness_degrades(
    make_settings: MakeSettings, make_token: MakeToken, redis_url: str, redis_prefix: str
) -> None:
    target = urlsplit(redis_url)
    proxy = TcpProxy(target.hostname or "127.0.0.1", target.port or 6379)
    await proxy.start()
    alice = bearer(make_token(f"user-{uuid.uuid4().hex[:8]}"))
    settings = {
        "rate_limit_storage_url": _via(redis_url, proxy.port),
        "rate_limit_key_prefix": redis_prefix,
        "query_rate_limit": "100/minute",
    }
    try:
        async with limited(make_settings, **settings) as client:
            up = await client.get("/v1/documents", headers=alice)
            assert up.status_code == 200
            assert figures(up)[:2] == (100, 99)
            ready = (await client.get("/readiness")).json()
            assert (ready["status"], ready["checks"]["redis"]) == ("ready", "ok")

            await proxy.stop()
            started = time.monotonic()
            for _ in range(5):
                down = await client.get("/v1/documents", headers=alice)
                assert down.status_code == 200  # Fail open: served, without figures.
                assert "x-ratelimit-limit" not in down.headers
            assert time.monotonic() - started < 3.0
            degraded = await client.get("/readiness")
            assert degraded.status_code == 200
            body = degraded.json()
            assert body["status"] == "degraded"
            assert body["checks"]["redis"].startswith("error")
            assert body["checks"]["database"] == "ok"

            await proxy.start()
            await asyncio.sleep(PAUSE_AFTER_FAILURE_S + 0.2)
            back = await client.get("/v1/documents", headers=alice)
            assert back.status_code == 200
            assert figures(back)[0] == 100  # Counting again once Redis answers.
            assert (await client.get("/readiness")).json()["status"] == "ready"
    finally:
        await proxy.stop()


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "redis:/nohost", "bogus"])
def test_an_unsupported_storage_url_stops_start_up(make_settings: MakeSettings, url: str) -> None:
    with pytest.raises(ConfigurationError, match="RATE_LIMIT_STORAGE_URL"):
        make_settings(rate_limit_storage_url=url)


async def test_every_public_operation_is_rate_limited(
    make_settings: MakeSettings, make_token: MakeToken
) -> None:
    # Walks the public document, so a router mounted later without a limit is caught here.
    # With the tus version header, which tus operations refuse to go without (412).
    alice = {**bearer(make_token("user-a")), "Tus-Resumable": "1.0.0"}
    app = create_app(make_settings(upload_rate_limit="1000/minute", query_rate_limit="1000/minute"))
    async with running_app(app) as client:
        document = (await client.get("/openapi.json")).json()
        checked = []
        for path, operations in document["paths"].items():
            url = (
                path.replace("{doc_id}", "doc_unknown")
                .replace("{task_id}", "task_unknown")
                .replace("{upload_id}", "unknown")
            )
            for method, operation in operations.items():
                if "text/event-stream" in operation["responses"].get("200", {}).get("content", {}):
                    # An event stream ends only with its client or the process: end them all at
                    # once, as SIGTERM does, so the in-process client gets the whole answer.
                    app.state.resources.hub.close()
                response = await client.request(method.upper(), url, headers=alice, json={})
                assert "x-ratelimit-limit" in response.headers, (method, path, response.text)
                checked.append((method, path))
        assert len(checked) >= 6

"""The access line: one per request, with the route template, status, duration, user and ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from upload_service.main import create_app
from upload_service.observability.logging_setup import JsonFormatter

JsonLines = Callable[[], list[dict[str, Any]]]
UNKNOWN_DOC = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    """Every line logged while the test runs, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    finally:
        root.removeHandler(handler)


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "upload_service.access"]


async def test_access_line_has_route_template_status_duration_user_and_ids(
    make_settings: MakeSettings, make_token: MakeToken, json_lines: JsonLines
) -> None:
    headers = {"Authorization": f"Bearer {make_token('alice')}", "X-Correlation-ID": "corr-42"}
    async with running_app(create_app(make_settings())) as client:
        response = await client.get(f"/v1/documents/{UNKNOWN_DOC}", headers=headers)
    assert response.status_code == 404
    [line] = access_lines(json_lines())
    assert line["level"] == "INFO"
    assert line["method"] == "GET"
    assert line["route"] == "/v1/documents/{doc_id}"
    assert line["path"] == f"/v1/documents/{UNKNOWN_DOC}"
    assert line["status"] == 404
    assert isinstance(line["duration_ms"], float)
    assert line["user_id"] == "alice"
    assert line["request_id"] == response.headers["x-request-id"]
    assert line["correlation_id"] == "corr-42"
    assert line["timestamp"].endswith("Z")


async def test_request_refused_before_routing_is_logged_under_its_route(
    make_settings: MakeSettings, json_lines: JsonLines
) -> None:
    async with running_app(create_app(make_settings())) as client:
        unauthenticated = await client.get(f"/v1/documents/{UNKNOWN_DOC}")
        unknown = await client.get("/no/such/path/123")
    assert (unauthenticated.status_code, unknown.status_code) == (401, 401)
    first, second = access_lines(json_lines())
    assert (first["route"], first["status"], first["user_id"]) == (
        "/v1/documents/{doc_id}",
        401,
        None,
    )
    # An unknown path never becomes a label of its own.
    assert second["route"] == "<unmatched>"


async def test_slow_request_is_a_warning(
    make_settings: MakeSettings, make_token: MakeToken, json_lines: JsonLines
) -> None:
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    async with running_app(create_app(make_settings(slow_request_ms=0.001))) as client:
        await client.get("/v1/documents", headers=headers)
    [line] = access_lines(json_lines())
    assert line["level"] == "WARNING"
    assert line["slow"] is True


async def test_a_long_event_stream_is_not_a_slow_request(
    make_settings: MakeSettings, make_token: MakeToken, json_lines: JsonLines
) -> None:
    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    app = create_app(make_settings(slow_request_ms=0.001))
    async with running_app(app) as client:
        app.state.resources.hub.close()  # Streams end at once, as on SIGTERM.
        response = await client.get("/v1/events", headers=headers)
    assert response.status_code == 200
    [line] = access_lines(json_lines())
    assert (line["route"], line["level"], line["slow"]) == ("/v1/events", "INFO", False)


async def test_unhandled_error_line_carries_the_request_id(
    make_settings: MakeSettings, make_token: MakeToken, json_lines: JsonLines
) -> None:
    app = create_app(make_settings())

    @app.get("/v1/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    async with running_app(app) as client:
        response = await client.get("/v1/boom", headers={"Authorization": f"Bearer {make_token()}"})
    assert response.status_code == 500
    lines = json_lines()
    error = next(line for line in lines if line["logger"] == "upload_service.errors")
    assert error["request_id"] == response.headers["x-request-id"]
    assert "RuntimeError: boom" in error["exception"]
    assert access_lines(lines)[0]["status"] == 500


async def test_probes_are_not_logged_at_info(
    make_settings: MakeSettings, json_lines: JsonLines
) -> None:
    # Kubelet calls them every few seconds; they are DEBUG lines unless they fail.
    async with running_app(create_app(make_settings())) as client:
        assert (await client.get("/health")).status_code == 200
    assert access_lines(json_lines()) == []

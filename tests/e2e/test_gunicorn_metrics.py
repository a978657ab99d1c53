"""/metrics under gunicorn: every worker's requests add up in one scrape."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gunicorn import gunicorn_argv, gunicorn_env, log_entries, wait_for_log
from tests.fixtures.app import LiveServer, MakeToken
from tests.integration.documents.conftest import pdf_bytes

pytestmark = pytest.mark.e2e

MAX_ROUNDS = 10
ROUND = 20


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a scrape, keyed by name and labels."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_counters_add_up_across_two_workers(
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: object,
    pg_url: str,
    tmp_path: Path,
) -> None:
    server = live_server(gunicorn_env(pg_url, tmp_path), argv=gunicorn_argv(workers=2))
    wait_for_log(server.log, "Application startup complete.", count=2)
    headers = {"Authorization": f"Bearer {make_token('alice')}"}

    def list_documents(_: int) -> int:
        # A new connection each time, so the workers share the requests between them.
        return httpx.get(f"{server.url}/v1/documents", headers=headers, timeout=10).status_code

    sent = 0
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(MAX_ROUNDS):
            assert set(pool.map(list_documents, range(ROUND))) == {200}
            sent += ROUND
            served_by = {
                entry["pid"]
                for entry in log_entries(server.log)
                if entry["logger"] == "upload_service.access" and entry["route"] == "/v1/documents"
            }
            if len(served_by) == 2:
                break
    assert len(served_by) == 2, "one worker served every request; the sum proves nothing"

    body = pdf_bytes(pad=10_000)
    upload = httpx.post(
        f"{server.url}/v1/documents", files={"file": ("a.pdf", body)}, headers=headers
    )
    assert upload.status_code == 202, upload.text

    scraped = samples(server.url)
    labels = frozenset({"method": "GET", "route": "/v1/documents", "status": "200"}.items())
    assert scraped[("http_requests_total", labels)] == sent
    assert scraped[("http_request_duration_seconds_count", labels)] == sent
    assert scraped[("document_upload_bytes_total", frozenset())] == len(body)
    assert scraped[("document_upload_size_bytes_count", frozenset())] == 1
    # Labelled by template, never by raw path.
    routes = {dict(key[1]).get("route") for key in scraped if key[0] == "http_requests_total"}
    assert routes <= {"/v1/documents", "/health", "/metrics", "<unmatched>"}
    # The upload's job is waiting (no worker runs in this test).
    queued = frozenset({"status": "queued"}.items())
    assert scraped[("job_queue_depth", queued)] == 1

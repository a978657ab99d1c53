"""/metrics: Prometheus text, labelled by route template, with uploads, jobs and queue depth."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.app import MakeToken
from tests.integration.documents.conftest import pdf_bytes
from upload_service.observability import metrics

UNKNOWN_DOC = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


async def test_requests_are_counted_by_route_template_never_raw_path(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    route = "/v1/documents/{doc_id}"
    key = ("http_requests_total", labels(method="GET", route=route, status="404"))
    before = (await scrape(client)).get(key, 0.0)
    for _ in range(3):
        await client.get(f"/v1/documents/{UNKNOWN_DOC}", headers=auth_headers)
    after = await scrape(client)
    assert after[key] == before + 3
    latency = ("http_request_duration_seconds_count", key[1])
    assert after[latency] >= 3
    assert not any(UNKNOWN_DOC in value for _, label_set in after for _, value in label_set)


async def test_scraping_needs_no_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/metrics")).status_code == 200


async def test_unknown_methods_do_not_mint_series(client: httpx.AsyncClient) -> None:
    await client.request("BREW", "/health")
    methods = {
        dict(label_set).get("method")
        for name, label_set in (await scrape(client))
        if name == "http_requests_total"
    }
    assert "BREW" not in methods
    assert "OTHER" in methods


async def test_accepted_upload_counts_its_bytes_and_queues_a_job(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    body = pdf_bytes(pad=5000)
    before = await scrape(client)
    response = await client.post(
        "/v1/documents",
        files={"file": ("a.pdf", body)},
        headers={"Authorization": f"Bearer {make_token('alice')}"},
    )
    assert response.status_code == 202, response.text
    after = await scrape(client)
    total = ("document_upload_bytes_total", frozenset())
    count = ("document_upload_size_bytes_count", frozenset())
    assert after[total] - before.get(total, 0.0) == len(body)
    assert after[count] - before.get(count, 0.0) == 1
    assert after[("job_queue_depth", labels(status="queued"))] == 1
    assert after[("job_queue_depth", labels(status="running"))] == 0


async def test_job_outcomes_are_counted_by_kind(client: httpx.AsyncClient) -> None:
    key = ("jobs_total", labels(kind="classify", outcome="retried"))
    before = (await scrape(client)).get(key, 0.0)
    metrics.record_job("classify", "retried")
    assert (await scrape(client))[key] == before + 1

"""Upload to classification, end to end, through a real server process and its own worker."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken
from tests.samples import sample_documents

pytestmark = pytest.mark.e2e


def wait_until_final(server: LiveServer, doc_id: str, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        body: dict[str, Any] = httpx.get(
            f"{server.url}/v1/documents/{doc_id}", headers=headers
        ).json()
        if body["status"] in ("complete", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"{doc_id} never reached a final status")


def upload_samples(server: LiveServer, headers: dict[str, str]) -> None:
    uploaded = []
    for sample in sample_documents():
        response = httpx.post(
            f"{server.url}/v1/documents",
            files={"file": (sample.filename, sample.content)},
            headers=headers,
            timeout=30,
        )
        assert response.status_code == 202, response.text
        uploaded.append((response.json()["doc_id"], sample.expected_label))
    for doc_id, label in uploaded:
        document = wait_until_final(server, doc_id, headers)
        assert document["status"] == "complete", document
        assert document["classification"]["label"] == label, (document, label)
        assert 0 < document["classification"]["confidence"] <= 1


def test_upload_is_classified_through_the_grpc_classifier(
    live_server: Callable[..., LiveServer],
    classifier_server: str,
    pg_url: str,
    pg_clean: object,
    make_token: MakeToken,
    tmp_path: Any,
) -> None:
    server = live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "JWT_SECRET": TEST_SECRET,
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "CLASSIFIER_TARGET": classifier_server,
            "WORKER_ENABLED": "true",
        }
    )
    upload_samples(server, {"Authorization": f"Bearer {make_token('alice')}"})
    ready = httpx.get(f"{server.url}/readiness").json()
    assert ready["checks"]["classifier"] == "ok"


def test_embedded_default_classifies_in_process(
    live_server: Callable[..., LiveServer], make_token: MakeToken
) -> None:
    import sys

    server = live_server(
        {}, argv=[sys.executable, "-m", "upload_service.cli", "serve", "--port", "{port}"]
    )
    from upload_service.config import DEV_JWT_SECRET
    from upload_service.edge.auth import mint_token

    upload_samples(server, {"Authorization": f"Bearer {mint_token(DEV_JWT_SECRET, 'bob')}"})

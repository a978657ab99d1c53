"""The generated client against a real server: upload, get and list with typed results."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken
from tests.integration.documents.conftest import pdf_bytes

pytestmark = pytest.mark.e2e

CLIENT_ROOT = Path(__file__).resolve().parents[2] / "clients" / "python"


@pytest.fixture
def client_package(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The committed client package, imported from the repository (as `pip install` would)."""
    monkeypatch.syspath_prepend(str(CLIENT_ROOT))
    import upload_service_client

    return upload_service_client


def test_client_uploads_gets_and_lists(
    client_package: Any,
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: object,
    pg_url: str,
    tmp_path: Path,
) -> None:
    from upload_service_client.api.documents import get_document, list_documents, upload_document
    from upload_service_client.models import (
        DocumentOut,
        DocumentPage,
        ErrorBody,
        UploadDocumentBody,
    )
    from upload_service_client.types import File

    server = live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
        }
    )
    content = pdf_bytes()
    with client_package.AuthenticatedClient(
        base_url=server.url, token=make_token("alice")
    ) as client:
        body = UploadDocumentBody(
            file=File(
                payload=io.BytesIO(content), file_name="invoice.pdf", mime_type="application/pdf"
            )
        )
        uploaded = upload_document.sync_detailed(client=client, body=body)
        assert uploaded.status_code == 202, uploaded.content
        document = uploaded.parsed
        assert isinstance(document, DocumentOut)
        assert document.filename == "invoice.pdf"
        assert document.size_bytes == len(content)
        assert document.status == "queued"

        fetched = get_document.sync(document.doc_id, client=client)
        assert isinstance(fetched, DocumentOut)
        assert fetched.sha256 == document.sha256

        page = list_documents.sync(client=client, limit=10)
        assert isinstance(page, DocumentPage)
        assert [item.doc_id for item in page.items] == [document.doc_id]

        missing = get_document.sync_detailed("doc_01HN3K8V2NKDQ7HTXJFR9CPWK0", client=client)
        assert missing.status_code == 404
        assert isinstance(missing.parsed, ErrorBody)
        assert missing.parsed.error_code == "DOCUMENT_NOT_FOUND"

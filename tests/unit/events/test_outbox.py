"""The outbox's document is the API's document, byte for byte; owner keys are stable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from upload_service.db.owner_locks import owner_key
from upload_service.documents.schemas import DocumentOut
from upload_service.events.outbox import DocumentChange, document_json

ROW = {
    "id": "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0",
    "owner": "alice",
    "status": "complete",
    "filename": "invoice.pdf",
    "content_type": "application/pdf",
    "size_bytes": 524288,
    "sha256": "9f" * 32,
    "storage_key": "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK0.pdf",
    "created_at": datetime(2026, 1, 15, 10, 30, 0, 123456, tzinfo=UTC),
    "updated_at": datetime(2026, 1, 15, 10, 31, 5, tzinfo=UTC),
    "classification": {"label": "invoice", "confidence": 0.93, "model_version": "ref-1"},
    "error": None,
    "correlation_id": "abc",
}


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"status": "queued", "classification": None},
        {
            "status": "failed",
            "classification": None,
            "error": {"code": "CLASSIFICATION_FAILED", "message": "no"},
        },
    ],
)
def test_event_data_is_what_get_document_returns(changes: dict[str, object]) -> None:
    row = {**ROW, **changes}
    assert document_json(row) == DocumentOut.of_row(row).model_dump(mode="json")


def test_a_change_carries_its_owner_and_a_deletion_only_the_id() -> None:
    updated = DocumentChange.updated(ROW)
    assert (updated.owner, updated.doc_id, updated.event) == (
        "alice",
        ROW["id"],
        "document.updated",
    )
    deleted = DocumentChange.deleted("alice", "doc_x")
    assert (deleted.event, deleted.data) == ("document.deleted", {"doc_id": "doc_x"})


def test_owner_keys_are_stable_32_bit_integers() -> None:
    assert owner_key("alice") == owner_key("alice")
    assert owner_key("alice") != owner_key("bob")
    assert all(-(2**31) <= owner_key(name) < 2**31 for name in ("", "a" * 255, "ü"))

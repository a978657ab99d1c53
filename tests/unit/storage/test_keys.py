"""Document keys: the janitor reads a document id only out of keys an upload makes."""

from __future__ import annotations

import pytest

from upload_service.db.models import new_doc_id
from upload_service.storage.keys import RAW_PREFIX, doc_id_of, raw_key


def test_an_upload_key_gives_back_its_document_id() -> None:
    doc_id = new_doc_id()

    key = raw_key(doc_id, ".pdf")

    assert key == f"{RAW_PREFIX}{doc_id}.pdf"
    assert doc_id_of(key) == doc_id
    assert doc_id_of(raw_key(doc_id, "")) == doc_id


@pytest.mark.parametrize(
    "key",
    [
        "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK.pdf",  # 25 characters: not a ULID
        "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWKU.pdf",  # U is not in the ULID alphabet
        "raw/notes.txt",
        "raw/nested/doc_01HN3K8V2NKDQ7HTXJFR9CPWKZ.pdf",
        "other/doc_01HN3K8V2NKDQ7HTXJFR9CPWKZ.pdf",
        "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWKZ.pdf.bak",
    ],
)
def test_keys_an_upload_never_makes_name_no_document(key: str) -> None:
    assert doc_id_of(key) is None

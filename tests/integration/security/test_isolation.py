"""Isolation: another user's document is 404 on every route, and stays exactly as it was."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.app import MakeToken
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.security.conftest import assert_envelope, bearer

UNKNOWN_DOC = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"
UNKNOWN_TASK = "task_01HN3K8V2NKDQ7HTXJFR9CPWK0"
DOCUMENT_ROUTES = [
    ("GET", "/v1/documents/{doc_id}"),
    ("GET", "/v1/documents/{doc_id}/content"),
    ("DELETE", "/v1/documents/{doc_id}"),
    ("POST", "/v1/documents/{doc_id}/process"),
]


async def _state_of(client: httpx.AsyncClient, doc_id: str, owner: dict[str, str]) -> object:
    meta = await client.get(f"/v1/documents/{doc_id}", headers=owner)
    content = await client.get(f"/v1/documents/{doc_id}/content", headers=owner)
    assert meta.status_code == 200
    assert content.status_code == 200
    return meta.json(), content.content


async def _mounted(client: httpx.AsyncClient, method: str, path: str, token: str) -> bool:
    # An unmounted path is the router's plain NOT_FOUND; a mounted one names what is missing.
    probe = path.format(doc_id=UNKNOWN_DOC, task_id=UNKNOWN_TASK)
    response = await client.request(method, probe, headers=bearer(token))
    return response.json().get("error_code") != "NOT_FOUND"


@pytest.mark.parametrize(("method", "path"), DOCUMENT_ROUTES)
async def test_another_users_document_is_404_and_unchanged(
    client: httpx.AsyncClient, make_token: MakeToken, method: str, path: str
) -> None:
    if not await _mounted(client, method, path, make_token("user-a")):
        pytest.skip(f"{method} {path} is not mounted by main.py")
    alice, bob = bearer(make_token("user-a")), bearer(make_token("user-b"))
    upload = await client.post(
        "/v1/documents", files={"file": ("mine.pdf", pdf_bytes("alice's secret"))}, headers=alice
    )
    assert upload.status_code == 202, upload.text
    doc_id = upload.json()["doc_id"]
    before = await _state_of(client, doc_id, alice)

    theirs = await client.request(method, path.format(doc_id=doc_id), headers=bob)
    missing = await client.request(method, path.format(doc_id=UNKNOWN_DOC), headers=bob)

    assert_envelope(theirs, 404, "DOCUMENT_NOT_FOUND")
    # Indistinguishable from a document that does not exist: nothing is disclosed.
    assert theirs.json()["message"].replace(doc_id, "ID") == missing.json()["message"].replace(
        UNKNOWN_DOC, "ID"
    )
    assert await _state_of(client, doc_id, alice) == before


async def test_batch_check_and_list_do_not_disclose_another_users_document(
    client: httpx.AsyncClient, make_token: MakeToken
) -> None:
    alice, bob = bearer(make_token("user-a")), bearer(make_token("user-b"))
    upload = await client.post(
        "/v1/documents", files={"file": ("mine.pdf", pdf_bytes())}, headers=alice
    )
    doc_id = upload.json()["doc_id"]
    before = await _state_of(client, doc_id, alice)

    check = await client.post(
        "/v1/documents/batch-check", json={"doc_ids": [doc_id, UNKNOWN_DOC]}, headers=bob
    )
    assert check.status_code == 200
    assert check.json()["results"] == {doc_id: False, UNKNOWN_DOC: False}
    listing = await client.get("/v1/documents", headers=bob)
    assert listing.status_code == 200
    assert listing.json()["items"] == []
    assert await _state_of(client, doc_id, alice) == before


async def test_another_users_task_is_404(client: httpx.AsyncClient, make_token: MakeToken) -> None:
    if not await _mounted(client, "GET", "/v1/tasks/{task_id}", make_token("user-a")):
        pytest.skip("GET /v1/tasks/{task_id} is not mounted by main.py")
    alice, bob = bearer(make_token("user-a")), bearer(make_token("user-b"))
    upload = await client.post(
        "/v1/documents", files={"file": ("mine.pdf", pdf_bytes())}, headers=alice
    )
    doc_id = upload.json()["doc_id"]
    task = await client.post(f"/v1/documents/{doc_id}/process", headers=alice)
    assert task.status_code == 202, task.text
    task_id = task.json()["task_id"]
    before = (await client.get(f"/v1/tasks/{task_id}", headers=alice)).json()

    theirs = await client.get(f"/v1/tasks/{task_id}", headers=bob)
    missing = await client.get(f"/v1/tasks/{UNKNOWN_TASK}", headers=bob)
    assert_envelope(theirs, 404, "TASK_NOT_FOUND")
    assert missing.status_code == 404
    assert (await client.get(f"/v1/tasks/{task_id}", headers=alice)).json() == before

"""Reading and managing documents: get, list, download, delete, batch-check, isolation."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeToken
from tests.integration.documents.conftest import PNG, pdf_bytes
from upload_service.db.models import Document, Job


async def upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    content: bytes | None = None,
    name: str = "doc.pdf",
) -> dict[str, object]:
    response = await client.post(
        "/v1/documents", files={"file": (name, content or pdf_bytes())}, headers=headers
    )
    assert response.status_code == 202, response.text
    return dict(response.json())


@pytest.fixture
def user_b(make_token: MakeToken) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('user-b')}"}


async def test_get_returns_the_document(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    created = await upload(client, auth_headers)
    response = await client.get(f"/v1/documents/{created['doc_id']}", headers=auth_headers)
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize("doc_id", ["doc_01HN3K8V2NKDQ7HTXJFR9CPWK0", "nonsense", "doc_' OR 1=1"])
async def test_unknown_document_is_404(
    client: httpx.AsyncClient, auth_headers: dict[str, str], doc_id: str
) -> None:
    response = await client.get(f"/v1/documents/{doc_id}", headers=auth_headers)
    assert response.status_code == 404
    assert response.json()["error_code"] == "DOCUMENT_NOT_FOUND"


async def test_list_pages_newest_first_with_an_opaque_cursor(
    client: httpx.AsyncClient, auth_headers: dict[str, str], user_b: dict[str, str]
) -> None:
    ids = [
        str((await upload(client, auth_headers, pdf_bytes(f"n{i}")))["doc_id"]) for i in range(5)
    ]
    await upload(client, user_b)
    first = (await client.get("/v1/documents?limit=2", headers=auth_headers)).json()
    assert [d["doc_id"] for d in first["items"]] == ids[::-1][:2]
    # A document created between pages does not shift or repeat the next page.
    await upload(client, auth_headers, pdf_bytes("late"))
    second = (
        await client.get(
            f"/v1/documents?limit=2&cursor={first['next_cursor']}", headers=auth_headers
        )
    ).json()
    assert [d["doc_id"] for d in second["items"]] == ids[::-1][2:4]
    third = (
        await client.get(
            f"/v1/documents?limit=2&cursor={second['next_cursor']}", headers=auth_headers
        )
    ).json()
    assert [d["doc_id"] for d in third["items"]] == ids[:1]
    assert third["next_cursor"] is None


async def test_list_filters_by_status(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    await upload(client, auth_headers)
    queued = (await client.get("/v1/documents?status=queued", headers=auth_headers)).json()
    done = (await client.get("/v1/documents?status=complete", headers=auth_headers)).json()
    assert len(queued["items"]) == 1
    assert done["items"] == []


@pytest.mark.parametrize(
    "query", ["cursor=%%%", "cursor=bm90LWEtZG9j", "limit=0", "limit=101", "status=lost"]
)
async def test_bad_list_query_is_422(
    client: httpx.AsyncClient, auth_headers: dict[str, str], query: str
) -> None:
    response = await client.get(f"/v1/documents?{query}", headers=auth_headers)
    assert response.status_code == 422
    body = response.json()
    assert body["error_code"] == "VALIDATION_ERROR"
    assert body["errors"][0]["loc"][0] == "query"


async def test_download_streams_the_bytes_with_headers(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    content = pdf_bytes(pad=300_000)
    created = await upload(client, auth_headers, content, name="Résumé final.pdf")
    response = await client.get(
        f"/v1/documents/{created['doc_id']}/content",
        headers={**auth_headers, "Accept-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.content == content
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["content-length"] == str(len(content))
    assert "content-encoding" not in response.headers  # Never re-compressed.
    assert response.headers["etag"] == f'"{hashlib.sha256(content).hexdigest()}"'
    assert response.headers["x-content-type-options"] == "nosniff"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "filename*=UTF-8''R%C3%A9sum%C3%A9%20final.pdf" in disposition


async def test_download_if_none_match_is_304(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    created = await upload(client, auth_headers)
    url = f"/v1/documents/{created['doc_id']}/content"
    etag = (await client.get(url, headers=auth_headers)).headers["etag"]
    response = await client.get(url, headers={**auth_headers, "If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""


@pytest.mark.parametrize(
    ("range_header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=10-", 10, None),
        ("bytes=-5", -5, None),
        ("bytes=3-100000", 3, None),
    ],
)
async def test_download_single_range_is_206(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    range_header: str,
    start: int,
    end: int | None,
) -> None:
    content = pdf_bytes()
    created = await upload(client, auth_headers, content)
    response = await client.get(
        f"/v1/documents/{created['doc_id']}/content",
        headers={**auth_headers, "Range": range_header},
    )
    expected = content[start : None if end is None else end + 1] if start >= 0 else content[start:]
    assert response.status_code == 206
    assert response.content == expected
    first = len(content) + start if start < 0 else start
    assert (
        response.headers["content-range"]
        == f"bytes {first}-{first + len(expected) - 1}/{len(content)}"
    )
    assert response.headers["content-length"] == str(len(expected))


async def test_unsatisfiable_range_is_416(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    content = pdf_bytes()
    created = await upload(client, auth_headers, content)
    response = await client.get(
        f"/v1/documents/{created['doc_id']}/content",
        headers={**auth_headers, "Range": f"bytes={len(content)}-"},
    )
    assert response.status_code == 416
    assert response.headers["content-range"] == f"bytes */{len(content)}"


async def test_delete_is_204_then_404_and_queues_the_purge(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    created = await upload(client, auth_headers)
    url = f"/v1/documents/{created['doc_id']}"
    assert (await client.delete(url, headers=auth_headers)).status_code == 204
    assert (await client.get(url, headers=auth_headers)).status_code == 404
    assert (await client.get("/v1/documents", headers=auth_headers)).json()["items"] == []
    assert (await client.delete(url, headers=auth_headers)).status_code == 404
    async with pg_clean.connect() as conn:
        purge = (await conn.execute(select(Job.payload).where(Job.kind == "purge"))).scalar_one()
    assert purge == {"storage_key": created["storage_key"]}


async def test_of_two_concurrent_deletes_one_is_204_and_the_other_404(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    created = await upload(client, auth_headers)
    url = f"/v1/documents/{created['doc_id']}"
    async with pg_clean.connect() as blocker:
        # Both requests find the document, then queue behind this lock to remove it.
        transaction = await blocker.begin()
        await blocker.execute(
            select(Document.id).where(Document.id == created["doc_id"]).with_for_update()
        )
        both = [asyncio.create_task(client.delete(url, headers=auth_headers)) for _ in range(2)]
        await asyncio.sleep(0.5)
        await transaction.rollback()
    statuses = sorted(response.status_code for response in await asyncio.gather(*both))
    assert statuses == [204, 404]
    async with pg_clean.connect() as conn:
        purges = (await conn.execute(select(Job.id).where(Job.kind == "purge"))).all()
    assert len(purges) == 1  # One delete happened, so one purge.


async def test_a_document_whose_bytes_are_missing_is_404_and_marked_failed(
    client: httpx.AsyncClient, auth_headers: dict[str, str], tmp_path: Path
) -> None:
    created = await upload(client, auth_headers)
    (tmp_path / "storage" / str(created["storage_key"])).unlink()
    url = f"/v1/documents/{created['doc_id']}"

    for _ in range(2):
        download = await client.get(f"{url}/content", headers=auth_headers)
        assert download.status_code == 404
        assert download.json()["error_code"] == "DOCUMENT_NOT_FOUND"
        assert "missing from storage" in download.json()["message"]
    document = (await client.get(url, headers=auth_headers)).json()
    assert document["status"] == "failed"
    assert document["error"]["code"] == "CONTENT_MISSING"
    failed = await client.get("/v1/documents?status=failed", headers=auth_headers)
    assert [item["doc_id"] for item in failed.json()["items"]] == [created["doc_id"]]


async def test_batch_check_reports_existence_ownership_and_storage(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    user_b: dict[str, str],
    tmp_path: Path,
) -> None:
    mine = await upload(client, auth_headers)
    gone = await upload(client, auth_headers, PNG, name="x.png")
    theirs = await upload(client, user_b)
    (tmp_path / "storage" / str(gone["storage_key"])).unlink()
    ids = [mine["doc_id"], gone["doc_id"], theirs["doc_id"], "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"]
    response = await client.post(
        "/v1/documents/batch-check", json={"doc_ids": ids}, headers=auth_headers
    )
    assert response.status_code == 200
    assert response.json()["results"] == dict(zip(ids, [True, False, False, False], strict=True))


@pytest.mark.parametrize("body", [{"doc_ids": []}, {"doc_ids": ["x"] * 101}, {}])
async def test_batch_check_validates_its_body(
    client: httpx.AsyncClient, auth_headers: dict[str, str], body: dict[str, object]
) -> None:
    response = await client.post("/v1/documents/batch-check", json=body, headers=auth_headers)
    assert response.status_code == 422


async def test_another_users_document_is_404_everywhere_and_unchanged(
    client: httpx.AsyncClient, auth_headers: dict[str, str], user_b: dict[str, str]
) -> None:
    created = await upload(client, auth_headers)
    url = f"/v1/documents/{created['doc_id']}"
    for response in (
        await client.get(url, headers=user_b),
        await client.get(f"{url}/content", headers=user_b),
        await client.delete(url, headers=user_b),
    ):
        assert response.status_code == 404
        assert response.json()["error_code"] == "DOCUMENT_NOT_FOUND"
    batch = await client.post(
        "/v1/documents/batch-check", json={"doc_ids": [created["doc_id"]]}, headers=user_b
    )
    assert batch.json()["results"] == {created["doc_id"]: False}
    assert (await client.get(url, headers=auth_headers)).json() == created


async def test_list_json_is_gzipped_when_large_and_accepted(
    client: httpx.AsyncClient, auth_headers: dict[str, str]
) -> None:
    for i in range(5):
        await upload(client, auth_headers, pdf_bytes(f"g{i}"))
    response = await client.get(
        "/v1/documents", headers={**auth_headers, "Accept-Encoding": "gzip"}
    )
    assert response.headers["content-encoding"] == "gzip"
    assert len(response.json()["items"]) == 5

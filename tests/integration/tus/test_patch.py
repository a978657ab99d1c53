"""PATCH, HEAD and DELETE: offsets, refusals before the body, checksums, types, completion."""

from __future__ import annotations

import asyncio
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.documents.conftest import docx_bytes, pdf_bytes
from tests.integration.security.conftest import assert_envelope, bearer
from tests.integration.security.test_body_limits import CountingBody
from tests.integration.tus.conftest import (
    OFFSET_STREAM,
    TUS,
    checksum,
    count,
    create_upload,
    head,
    metadata,
    patch,
    upload_row,
)
from upload_service.db.models import Document, Job, Upload
from upload_service.db.uploads import LEASE_S
from upload_service.main import create_app


@pytest.fixture
def storage_root(tmp_path: Path) -> Path:
    return tmp_path / "storage"


async def partial_size(engine: AsyncEngine, storage_root: Path, location: str) -> int | None:
    """Bytes in the upload's partial file, None when there is none."""
    row = await upload_row(engine, location)
    assert row is not None
    path = storage_root / ".partial" / row.storage_key
    return path.stat().st_size if path.exists() else None


def all_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_head_reports_offset_length_metadata_and_expiry_never_cached(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    sent = metadata(filename="a.pdf", filetype="application/pdf", note="")
    response = await client.post(
        "/v1/uploads/tus",
        headers={**auth_headers, **TUS, "Upload-Length": "5000", "Upload-Metadata": sent},
    )
    location = response.headers["location"]
    await patch(client, auth_headers, location, 0, pdf_bytes(pad=5000)[:1000])
    status = await head(client, auth_headers, location)
    assert status.status_code == 200
    assert status.headers["upload-offset"] == "1000"
    assert status.headers["upload-length"] == "5000"
    assert status.headers["upload-metadata"] == sent  # Exactly as received.
    assert status.headers["upload-expires"].endswith(" GMT")
    assert status.headers["cache-control"] == "no-store"
    assert status.headers["tus-resumable"] == "1.0.0"
    assert "document-location" not in status.headers


async def test_each_patch_moves_the_offset_by_what_it_stored_and_extends_the_expiry(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=200_000)
    location = await create_upload(client, auth_headers, len(content))
    first = await patch(client, auth_headers, location, 0, content[:70_000])
    assert first.status_code == 204, first.text
    assert first.headers["upload-offset"] == "70000"
    assert first.headers["upload-expires"].endswith(" GMT")
    assert await partial_size(pg_clean, storage_root, location) == 70_000
    second = await patch(client, auth_headers, location, 70_000, content[70_000:140_000])
    assert second.headers["upload-offset"] == "140000"
    assert await partial_size(pg_clean, storage_root, location) == 140_000
    # Nothing under raw/ before the last byte: a partial upload is not an object.
    assert not (storage_root / "raw").exists()


async def test_a_wrong_content_type_is_415_before_the_body_is_read(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    location = await create_upload(client, auth_headers, 1000)
    body = CountingBody(1000)
    response = await client.patch(
        location,
        content=body,
        headers={
            **auth_headers,
            **TUS,
            "Content-Type": "application/octet-stream",
            "Upload-Offset": "0",
        },
    )
    assert_envelope(response, 415, "UNSUPPORTED_MEDIA_TYPE")
    assert body.pulled == 0


async def test_a_wrong_offset_is_409_before_the_body_is_read_and_changes_nothing(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes()
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:100])
    body = CountingBody(100)
    response = await client.patch(
        location,
        content=body,
        headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
    )
    error = assert_envelope(response, 409, "OFFSET_MISMATCH")
    assert error["details"] == {"offset": 100}
    assert body.pulled == 0
    assert (await head(client, auth_headers, location)).headers["upload-offset"] == "100"


async def test_an_unknown_upload_is_404_and_another_users_is_404_too(
    client: httpx.AsyncClient, make_token: MakeToken, pg_clean: AsyncEngine
) -> None:
    alice, mallory = bearer(make_token("alice")), bearer(make_token("mallory"))
    location = await create_upload(client, alice, 1000)
    for headers, path in ((alice, "/v1/uploads/tus/unknown-id"), (mallory, location)):
        status = await client.head(path, headers={**headers, **TUS})
        assert status.status_code == 404
        assert "upload-offset" not in status.headers
        body = CountingBody(100)
        appended = await client.patch(
            path,
            content=body,
            headers={**headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
        )
        assert_envelope(appended, 404, "NOT_FOUND")
        assert body.pulled == 0
        deleted = await client.delete(path, headers={**headers, **TUS})
        assert_envelope(deleted, 404, "NOT_FOUND")
    # Alice's upload is untouched.
    assert (await head(client, alice, location)).status_code == 200


async def test_a_body_past_the_length_is_400_and_none_of_it_is_kept(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=10_000)
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:1000])
    # Declared too long: refused before reading.
    declared = await patch(client, auth_headers, location, 1000, content[1000:] + b"extra")
    assert_envelope(declared, 400, "MALFORMED_UPLOAD")

    # Streamed without a length (chunked): cut off at the length, and nothing of it kept.
    async def chunked() -> AsyncIterator[bytes]:
        yield content[1000:5000]
        yield content[5000:] + b"past the end"

    streamed = await client.patch(
        location,
        content=chunked(),
        headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "1000"},
    )
    assert_envelope(streamed, 400, "MALFORMED_UPLOAD")
    assert (await head(client, auth_headers, location)).headers["upload-offset"] == "1000"
    assert await partial_size(pg_clean, storage_root, location) == 1000
    assert await count(pg_clean, Document) == 0


@pytest.mark.parametrize("algorithm", ["sha1", "sha256"])
async def test_a_body_matching_its_checksum_is_kept(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    algorithm: str,
) -> None:
    content = pdf_bytes(pad=5000)
    location = await create_upload(client, auth_headers, len(content))
    chunk = content[:3000]
    response = await patch(
        client, auth_headers, location, 0, chunk, **{"Upload-Checksum": checksum(algorithm, chunk)}
    )
    assert response.status_code == 204, response.text
    assert response.headers["upload-offset"] == "3000"


async def test_a_checksum_mismatch_is_460_and_the_offset_and_bytes_stay_as_they_were(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=5000)
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:1000])
    response = await patch(
        client,
        auth_headers,
        location,
        1000,
        content[1000:3000],
        **{"Upload-Checksum": checksum("sha256", b"something else")},
    )
    assert_envelope(response, 460, "CHECKSUM_MISMATCH")
    assert (await head(client, auth_headers, location)).headers["upload-offset"] == "1000"
    assert await partial_size(pg_clean, storage_root, location) == 1000
    # The client sends the chunk again, right this time, and the upload completes correctly.
    retried = await patch(client, auth_headers, location, 1000, content[1000:])
    assert retried.status_code == 204, retried.text
    document = await client.get(retried.headers["document-location"], headers=auth_headers)
    assert document.json()["sha256"] == hashlib.sha256(content).hexdigest()


async def test_an_unknown_checksum_algorithm_is_400_before_the_body_is_read(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    location = await create_upload(client, auth_headers, 1000)
    body = CountingBody(100)
    response = await client.patch(
        location,
        content=body,
        headers={
            **auth_headers,
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Offset": "0",
            "Upload-Checksum": "md5 AAAAAAAAAAAAAAAAAAAAAA==",
        },
    )
    assert_envelope(response, 400, "MALFORMED_UPLOAD")
    assert body.pulled == 0


async def test_the_wrong_type_is_422_at_the_first_bytes_and_the_upload_ends_with_its_bytes(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    location = await create_upload(client, auth_headers, 100_000, filename="scan.pdf")
    response = await patch(client, auth_headers, location, 0, b"\x89PNG\r\n\x1a\n" + bytes(500))
    body = assert_envelope(response, 422, "UNSUPPORTED_FILE_TYPE")
    assert ".pdf" in body["details"]["allowed"]
    gone = await head(client, auth_headers, location)
    assert gone.status_code == 410
    assert all_files(storage_root) == []
    assert await count(pg_clean, Document) == 0


async def test_a_docx_without_its_parts_is_refused_at_the_end_and_nothing_is_left(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("notes.txt", "a zip, but not a Word document " * 200)
    content = buffer.getvalue()
    location = await create_upload(client, auth_headers, len(content), filename="letter.docx")
    first = await patch(client, auth_headers, location, 0, content[:100])
    assert first.status_code == 204  # A ZIP so far: it may still be a DOCX.
    last = await patch(client, auth_headers, location, 100, content[100:])
    assert_envelope(last, 422, "UNSUPPORTED_FILE_TYPE")
    assert (await head(client, auth_headers, location)).status_code == 410
    assert all_files(storage_root) == []
    assert await count(pg_clean, Document) == 0


async def test_completion_makes_one_document_and_one_job_like_a_plain_upload(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = docx_bytes("Dear Sir, I write to tell you " * 500)
    location = await create_upload(client, auth_headers, len(content), filename="../Letter.docx")
    offset = 0
    for size in (1000, 7000, len(content)):
        end = min(size + offset, len(content))
        response = await patch(client, auth_headers, location, offset, content[offset:end])
        assert response.status_code == 204, response.text
        offset = end
        if offset == len(content):
            break
    assert response.headers["upload-offset"] == str(len(content))
    doc_location = response.headers["document-location"]
    assert "upload-expires" not in response.headers
    tus_document = (await client.get(doc_location, headers=auth_headers)).json()

    plain = await client.post(
        "/v1/documents",
        files={"file": ("../Letter.docx", content, "application/octet-stream")},
        headers=auth_headers,
    )
    plain_document = plain.json()
    assert set(tus_document) == set(plain_document)
    for field in ("filename", "content_type", "size_bytes", "sha256", "status"):
        assert tus_document[field] == plain_document[field], field
    assert tus_document["sha256"] == hashlib.sha256(content).hexdigest()
    assert tus_document["storage_key"] == f"raw/{tus_document['doc_id']}.docx"
    stored = storage_root / tus_document["storage_key"]
    assert stored.read_bytes() == content
    assert not (storage_root / ".partial" / tus_document["storage_key"]).exists()

    async with pg_clean.connect() as conn:
        jobs = (
            await conn.execute(select(Job.kind).where(Job.doc_id == tus_document["doc_id"]))
        ).all()
    assert [job.kind for job in jobs] == ["classify"]
    status = await head(client, auth_headers, location)
    assert status.headers["document-location"] == doc_location
    assert status.headers["upload-offset"] == str(len(content))


async def test_a_repeated_final_patch_creates_nothing_new(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=3000)
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:1000])
    final = await patch(client, auth_headers, location, 1000, content[1000:])
    assert final.status_code == 204
    # The answer was lost; the client sends the same request again.
    again = await patch(client, auth_headers, location, 1000, content[1000:])
    assert_envelope(again, 409, "UPLOAD_COMPLETE")
    assert again.headers["document-location"] == final.headers["document-location"]
    assert again.headers["upload-offset"] == str(len(content))
    # An empty PATCH at the end asks for the result: 204 with the document's location.
    empty = await patch(client, auth_headers, location, len(content), b"")
    assert empty.status_code == 204
    assert empty.headers["document-location"] == final.headers["document-location"]
    assert await count(pg_clean, Document) == 1
    assert await count(pg_clean, Job) == 1


async def test_termination_removes_the_bytes_and_the_upload_answers_410_after(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=3000)
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:1000])
    assert all_files(storage_root) != []
    deleted = await client.delete(location, headers={**auth_headers, **TUS})
    assert deleted.status_code == 204
    assert deleted.headers["tus-resumable"] == "1.0.0"
    assert all_files(storage_root) == []
    assert (await head(client, auth_headers, location)).status_code == 410
    assert_envelope(
        await patch(client, auth_headers, location, 1000, content[1000:]), 410, "UPLOAD_GONE"
    )
    assert_envelope(
        await client.delete(location, headers={**auth_headers, **TUS}), 410, "UPLOAD_GONE"
    )


async def test_a_complete_upload_cannot_be_terminated(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes()
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content)
    response = await client.delete(location, headers={**auth_headers, **TUS})
    assert_envelope(response, 409, "UPLOAD_COMPLETE")
    assert await count(pg_clean, Document) == 1


async def test_method_override_on_a_post_is_honoured(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=3000)
    location = await create_upload(client, auth_headers, len(content))
    appended = await client.post(
        location,
        content=content[:500],
        headers={
            **auth_headers,
            **TUS,
            "X-HTTP-Method-Override": "PATCH",
            "Content-Type": OFFSET_STREAM,
            "Upload-Offset": "0",
        },
    )
    assert appended.status_code == 204, appended.text
    assert appended.headers["upload-offset"] == "500"
    terminated = await client.post(
        location, headers={**auth_headers, **TUS, "X-HTTP-Method-Override": "DELETE"}
    )
    assert terminated.status_code == 204
    assert (await head(client, auth_headers, location)).status_code == 410
    assert all_files(storage_root) == []


async def test_a_second_patch_while_one_runs_is_423_and_the_first_one_completes(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=20_000)
    location = await create_upload(client, auth_headers, len(content))
    first_bytes_in = asyncio.Event()
    go_on = asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield content[:5000]
        first_bytes_in.set()
        await asyncio.wait_for(go_on.wait(), 10)
        yield content[5000:10_000]

    first = asyncio.create_task(
        client.patch(
            location,
            content=slow_body(),
            headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
        )
    )
    await asyncio.wait_for(first_bytes_in.wait(), 10)
    body = CountingBody(100)
    second = await client.patch(
        location,
        content=body,
        headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
    )
    assert_envelope(second, 423, "UPLOAD_LOCKED")
    assert body.pulled == 0
    # Termination waits for the writer too.
    assert_envelope(
        await client.delete(location, headers={**auth_headers, **TUS}), 423, "UPLOAD_LOCKED"
    )
    go_on.set()
    done = await asyncio.wait_for(first, 10)
    assert done.status_code == 204, done.text
    assert done.headers["upload-offset"] == "10000"
    # The lease is let go at once: the next PATCH is served.
    nxt = await patch(client, auth_headers, location, 10_000, content[10_000:])
    assert nxt.status_code == 204, nxt.text
    row = await upload_row(pg_clean, location)
    assert row is not None
    assert row.locked_by is None
    assert row.state == "done"


async def test_an_upload_row_records_what_the_upload_is(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    location = await create_upload(client, auth_headers, 1234, filename="../x/Plan.pdf")
    row = await upload_row(pg_clean, location)
    assert row is not None
    assert (row.owner, row.length, row.offset, row.state) == ("user-a", 1234, 0, "open")
    assert row.filename == "Plan.pdf"
    assert row.storage_key == f"raw/{row.doc_id}.pdf"
    assert row.locked_by is None
    async with pg_clean.connect() as conn:
        assert (await conn.execute(select(Upload.id))).scalar_one() == row.id


async def test_a_body_that_stops_arriving_is_408_and_what_arrived_is_kept(
    make_settings: MakeSettings, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=20_000)
    async with running_app(create_app(make_settings(upload_idle_timeout_s=0.5))) as client:
        location = await create_upload(client, auth_headers, len(content))
        never = asyncio.Event()

        async def stalling() -> AsyncIterator[bytes]:
            yield content[:3000]
            await asyncio.wait_for(never.wait(), 10)

        response = await client.patch(
            location,
            content=stalling(),
            headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
        )
        assert_envelope(response, 408, "UPLOAD_TIMEOUT")
        status = await head(client, auth_headers, location)
        assert status.headers["upload-offset"] == "3000"
        resumed = await patch(client, auth_headers, location, 3000, content[3000:])
        assert resumed.status_code == 204, resumed.text


async def test_a_long_patch_keeps_its_lease_past_the_lease_time(
    client: httpx.AsyncClient, auth_headers: dict[str, str], pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes(pad=20_000)
    location = await create_upload(client, auth_headers, len(content))
    first_bytes_in, go_on = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield content[:5000]
        first_bytes_in.set()
        await asyncio.wait_for(go_on.wait(), 30)
        yield content[5000:]

    writer = asyncio.create_task(
        client.patch(
            location,
            content=slow_body(),
            headers={**auth_headers, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"},
        )
    )
    await asyncio.wait_for(first_bytes_in.wait(), 10)
    await asyncio.sleep(LEASE_S + 1)  # Past the lease time: only renewal keeps it.
    assert_envelope(await patch(client, auth_headers, location, 0, b"%PDF-"), 423, "UPLOAD_LOCKED")
    go_on.set()
    done = await asyncio.wait_for(writer, 10)
    assert done.status_code == 204, done.text
    assert "document-location" in done.headers


async def test_terminating_an_upload_whose_bytes_are_all_in_removes_its_object_too(
    client: httpx.AsyncClient,
    auth_headers: dict[str, str],
    pg_clean: AsyncEngine,
    storage_root: Path,
) -> None:
    content = pdf_bytes(pad=2000)
    location = await create_upload(client, auth_headers, len(content))
    await patch(client, auth_headers, location, 0, content[:1000])
    row = await upload_row(pg_clean, location)
    assert row is not None
    # As a process that put the object in place and died before recording it leaves it.
    final = storage_root / row.storage_key
    final.parent.mkdir(parents=True, exist_ok=True)
    final.write_bytes(content)
    (storage_root / ".partial" / row.storage_key).unlink()
    async with pg_clean.begin() as conn:
        await conn.execute(
            update(Upload).where(Upload.id == row.id).values(offset=len(content), state="finishing")
        )
    deleted = await client.delete(location, headers={**auth_headers, **TUS})
    assert deleted.status_code == 204
    assert all_files(storage_root) == []
    assert await count(pg_clean, Document) == 0

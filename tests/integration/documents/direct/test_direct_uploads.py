"""Direct uploads to S3 (moto server), end to end: declare, send to S3, complete, and the
verification that refuses on its own what moto lets through (moto checks no policy, signature,
expiry or checksum, so each refusal here is the service's own)."""

from __future__ import annotations

import asyncio
import io
import zipfile

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.integration.documents.conftest import count_rows, docx_bytes, pdf_bytes
from tests.integration.documents.direct.conftest import MIB, DirectBench, sha256_of
from tests.samples import png_bytes
from upload_service.db.models import DirectUpload, Document, Job
from upload_service.main import create_app


async def test_small_file_goes_by_presigned_post_and_is_recorded_after_verification(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Invoice 7 total due")
    declared = await bench.declare("invoice.pdf", content)
    assert declared.status_code == 201, declared.text
    body = declared.json()
    assert body["method"] == "post"
    assert body["upload_id"].startswith("dup_")
    assert body["key"].startswith("staging/")
    assert body["key"].endswith(body["upload_id"])
    assert body["post"]["fields"]["key"] == body["key"]

    sent = await bench.post_file(body, content)
    assert sent.status_code in (200, 201, 204), sent.text
    completed = await bench.complete(body["upload_id"])
    assert completed.status_code == 202, completed.text
    document = completed.json()
    assert document["status"] == "queued"
    assert document["content_type"] == "application/pdf"
    assert document["size_bytes"] == len(content)
    assert document["sha256"] == sha256_of(content)  # Not declared: computed all the same.
    assert document["storage_key"] == f"raw/{document['doc_id']}.pdf"
    assert completed.headers["location"] == f"/v1/documents/{document['doc_id']}"

    # Out of staging: the bytes are under the document's key only.
    assert bench.keys() == [document["storage_key"]]
    stored = bench.s3.get_object(Bucket=bench.bucket, Key=document["storage_key"])
    assert stored["Body"].read() == content
    assert await count_rows(pg_clean, Job) == 1

    again = await bench.complete(body["upload_id"])
    assert again.status_code == 202
    assert again.json()["doc_id"] == document["doc_id"]
    assert await count_rows(pg_clean, Document) == 1
    state = await bench.api.get(f"/v1/uploads/direct/{body['upload_id']}", headers=bench.headers)
    assert state.json()["state"] == "completed"
    assert state.json()["doc_id"] == document["doc_id"]


async def test_multipart_upload_resumes_from_the_parts_s3_holds(bench: DirectBench) -> None:
    content = pdf_bytes("Contract", pad=12 * MIB)
    declared = (await bench.declare("contract.pdf", content, sha256=sha256_of(content))).json()
    assert declared["method"] == "multipart"
    assert declared["post"] is None
    assert declared["part_size"] == 8 * MIB
    assert declared["part_count"] == 2
    upload_id = declared["upload_id"]

    [first] = await bench.sign(upload_id, [1])
    assert first["size"] == 8 * MIB
    etag1 = await bench.put_part(first["url"], content[: 8 * MIB])
    # "The connection dropped": the client asks what S3 holds and sends only the rest.
    state = (await bench.api.get(f"/v1/uploads/direct/{upload_id}", headers=bench.headers)).json()
    assert state["state"] == "pending"
    assert [(p["part_number"], p["size"]) for p in state["parts"]] == [(1, 8 * MIB)]
    [second] = await bench.sign(upload_id, [2])
    assert second["size"] == len(content) - 8 * MIB
    etag2 = await bench.put_part(second["url"], content[8 * MIB :])

    completed = await bench.complete(
        upload_id,
        parts=[{"part_number": 1, "etag": etag1}, {"part_number": 2, "etag": etag2}],
    )
    assert completed.status_code == 202, completed.text
    document = completed.json()
    assert document["sha256"] == sha256_of(content)
    assert bench.keys() == [document["storage_key"]]
    assert bench.open_multipart_uploads() == 0
    download = await bench.api.get(
        f"/v1/documents/{document['doc_id']}/content", headers=bench.headers
    )
    assert download.content == content


async def test_a_missing_part_is_422_and_the_upload_stays_open(bench: DirectBench) -> None:
    content = pdf_bytes("Two parts", pad=9 * MIB)
    declared = (await bench.declare("two.pdf", content)).json()
    upload_id = declared["upload_id"]
    first, second = await bench.sign(upload_id, [1, 2])
    await bench.put_part(first["url"], content[: 8 * MIB])

    early = await bench.complete(upload_id)
    assert early.status_code == 422
    assert early.json()["error_code"] == "SIZE_MISMATCH"
    assert early.json()["details"] == {"missing_parts": [2]}

    await bench.put_part(second["url"], content[8 * MIB :])
    assert (await bench.complete(upload_id)).status_code == 202


async def test_oversize_post_is_refused_and_deleted(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Declared small")
    declared = (await bench.declare("small.pdf", content)).json()
    # moto ignores the policy's content-length-range: the larger body is stored.
    await bench.post_file(declared, content + b"\0" * 5000)
    refused = await bench.complete(declared["upload_id"])
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "SIZE_MISMATCH"
    assert refused.json()["details"] == {"declared": len(content), "stored": len(content) + 5000}
    assert bench.keys() == []
    assert await count_rows(pg_clean, Document) == 0
    again = await bench.complete(declared["upload_id"])
    assert again.status_code == 410
    assert again.json()["error_code"] == "UPLOAD_GONE"


async def test_oversize_part_is_refused_and_the_multipart_upload_aborted(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Parts", pad=9 * MIB)
    declared = (await bench.declare("parts.pdf", content)).json()
    first, second = await bench.sign(declared["upload_id"], [1, 2])
    await bench.put_part(first["url"], content[: 8 * MIB])
    # moto does not check the signed Content-Length: a longer part is stored.
    await bench.put_part(second["url"], content[8 * MIB :] + b"\0" * 1000)
    refused = await bench.complete(declared["upload_id"])
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "SIZE_MISMATCH"
    assert bench.open_multipart_uploads() == 0
    assert bench.keys() == []
    assert await count_rows(pg_clean, Document) == 0


async def test_wrong_type_is_refused_and_deleted(bench: DirectBench, pg_clean: AsyncEngine) -> None:
    content = png_bytes()
    declared = (await bench.declare("looks-like.pdf", content)).json()
    await bench.post_file(declared, content)
    refused = await bench.complete(declared["upload_id"])
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "UNSUPPORTED_FILE_TYPE"
    assert bench.keys() == []
    assert await count_rows(pg_clean, Document) == 0


async def test_wrong_checksum_is_refused_and_deleted(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("The real bytes")
    declared = (await bench.declare("sum.pdf", content, sha256=sha256_of(b"other bytes"))).json()
    # moto stores the bytes whatever checksum the form carries.
    await bench.post_file(declared, content)
    refused = await bench.complete(declared["upload_id"])
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "CHECKSUM_MISMATCH"
    assert bench.keys() == []  # Neither the staged object nor its copy out of staging.
    assert await count_rows(pg_clean, Document) == 0


async def test_bytes_sent_to_a_key_of_the_clients_choosing_are_never_recorded(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Elsewhere")
    declared = (await bench.declare("elsewhere.pdf", content)).json()
    fields = dict(declared["post"]["fields"])
    fields["key"] = "raw/doc_01HN3K8V2NKDQ7HTXJFR9CPWK0.pdf"  # moto ignores the exact-key rule
    sent = await bench.s3_http.post(
        declared["post"]["url"], data=fields, files={"file": ("blob", content)}
    )
    assert sent.status_code in (200, 201, 204)
    refused = await bench.complete(declared["upload_id"])
    assert refused.status_code == 422
    assert refused.json()["error_code"] == "SIZE_MISMATCH"
    assert await count_rows(pg_clean, Document) == 0
    # The upload stays open: the right bytes sent to the right key still complete it.
    await bench.post_file(declared, content)
    assert (await bench.complete(declared["upload_id"])).status_code == 202


async def test_a_docx_is_judged_by_its_ends(bench: DirectBench) -> None:
    content = docx_bytes("Dear Sir")
    declared = (await bench.declare("letter.docx", content)).json()
    await bench.post_file(declared, content)
    completed = await bench.complete(declared["upload_id"])
    assert completed.status_code == 202, completed.text
    assert completed.json()["content_type"].endswith("wordprocessingml.document")
    assert completed.json()["sha256"] == sha256_of(content)


async def test_declarations_are_checked_before_anything_exists(bench: DirectBench) -> None:
    too_big = await bench.api.post(
        "/v1/uploads/direct",
        json={"filename": "a.pdf", "size": 65 * MIB, "content_type": "application/pdf"},
        headers=bench.headers,
    )
    assert too_big.status_code == 413
    assert too_big.json()["details"] == {"max_bytes": 64 * MIB}
    wrong_name = await bench.declare("script.exe", b"MZ")
    assert wrong_name.status_code == 422
    assert wrong_name.json()["error_code"] == "UNSUPPORTED_FILE_TYPE"
    empty = await bench.declare("empty.pdf", b"")
    assert empty.status_code == 422
    assert empty.json()["error_code"] == "EMPTY_FILE"
    bad_sum = await bench.declare("a.pdf", b"%PDF-", sha256="xyz")
    assert bad_sum.status_code == 422
    assert bad_sum.json()["error_code"] == "VALIDATION_ERROR"
    assert bench.keys() == []
    assert bench.open_multipart_uploads() == 0


async def test_another_users_upload_is_404_on_every_route(
    bench: DirectBench, make_token: MakeToken, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Mine", pad=9 * MIB)
    upload_id = (await bench.declare("mine.pdf", content)).json()["upload_id"]
    other = {"Authorization": f"Bearer {make_token('user-b')}"}
    base = f"/v1/uploads/direct/{upload_id}"
    answers = [
        await bench.api.get(base, headers=other),
        await bench.api.post(f"{base}/parts", json={"part_numbers": [1]}, headers=other),
        await bench.api.post(f"{base}/complete", headers=other),
        await bench.api.delete(base, headers=other),
    ]
    assert [a.status_code for a in answers] == [404, 404, 404, 404]
    assert {a.json()["error_code"] for a in answers} == {"NOT_FOUND"}
    assert bench.open_multipart_uploads() == 1  # Still the owner's, untouched.
    async with pg_clean.connect() as conn:
        state = await conn.scalar(select(DirectUpload.state).where(DirectUpload.id == upload_id))
    assert state == "pending"


async def test_parts_outside_the_plan_are_not_signed(bench: DirectBench) -> None:
    content = pdf_bytes("Plan", pad=9 * MIB)
    upload_id = (await bench.declare("plan.pdf", content)).json()["upload_id"]
    beyond = await bench.api.post(
        f"/v1/uploads/direct/{upload_id}/parts", json={"part_numbers": [3]}, headers=bench.headers
    )
    assert beyond.status_code == 422
    assert beyond.json()["error_code"] == "VALIDATION_ERROR"


async def test_cancel_removes_the_bytes_and_later_requests_are_410(bench: DirectBench) -> None:
    content = pdf_bytes("Cancel me", pad=9 * MIB)
    upload_id = (await bench.declare("cancel.pdf", content)).json()["upload_id"]
    [first] = await bench.sign(upload_id, [1])
    await bench.put_part(first["url"], content[: 8 * MIB])
    cancelled = await bench.api.delete(f"/v1/uploads/direct/{upload_id}", headers=bench.headers)
    assert cancelled.status_code == 204
    assert bench.open_multipart_uploads() == 0
    later = await bench.api.get(f"/v1/uploads/direct/{upload_id}", headers=bench.headers)
    assert later.status_code == 410
    assert later.json()["error_code"] == "UPLOAD_GONE"
    assert (await bench.complete(upload_id)).status_code == 410


async def test_concurrent_completes_record_one_document(
    bench: DirectBench, pg_clean: AsyncEngine
) -> None:
    content = pdf_bytes("Twice at once")
    declared = (await bench.declare("twice.pdf", content)).json()
    await bench.post_file(declared, content)
    answers = await asyncio.gather(*(bench.complete(declared["upload_id"]) for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {202, 423}, [a.text for a in answers]
    assert 202 in statuses
    assert len({a.json()["doc_id"] for a in answers if a.status_code == 202}) == 1
    assert await count_rows(pg_clean, Document) == 1
    assert (await bench.complete(declared["upload_id"])).status_code == 202


async def test_with_local_storage_the_routes_do_not_exist(
    make_settings: MakeSettings, auth_headers: dict[str, str]
) -> None:
    async with running_app(create_app(make_settings())) as api:
        response = await api.post(
            "/v1/uploads/direct",
            json={"filename": "a.pdf", "size": 10, "content_type": "application/pdf"},
            headers=auth_headers,
        )
        assert response.status_code == 404
        assert response.json()["error_code"] == "NOT_FOUND"
        spec = (await api.get("/openapi.json")).json()
        assert not any(path.startswith("/v1/uploads/direct") for path in spec["paths"])


async def test_turned_off_with_s3_the_routes_do_not_exist(
    direct_settings: MakeSettings, auth_headers: dict[str, str]
) -> None:
    async with running_app(create_app(direct_settings(direct_uploads=False))) as api:
        response = await api.get("/v1/uploads/direct/dup_x", headers=auth_headers)
        assert response.status_code == 404


def docx_with_a_large_directory(entries: int) -> bytes:
    """A DOCX whose ZIP central directory is larger than the tail the ends check reads."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", "<w:document/>")
        for number in range(entries):
            archive.writestr(f"word/media/{'x' * 80}-{number}.bin", b"")
    return buffer.getvalue()


async def test_a_docx_the_ends_cannot_judge_is_read_back_whole(bench: DirectBench) -> None:
    content = docx_with_a_large_directory(3000)
    declared = (await bench.declare("big-directory.docx", content)).json()
    await bench.post_file(declared, content)
    completed = await bench.complete(declared["upload_id"])
    assert completed.status_code == 202, completed.text
    assert completed.json()["content_type"].endswith("wordprocessingml.document")
    assert completed.json()["sha256"] == sha256_of(content)

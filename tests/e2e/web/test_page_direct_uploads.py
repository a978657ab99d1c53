"""The web page sending files straight to S3 (moto's server) in a real chromium, and falling
back to tus when it cannot.

A small file goes as a presigned POST, a larger one as a multipart upload whose parts are PUT to
their signed URLs; both end as documents with the file's sha256 and one classify job. A paused
upload continues after a reload from the parts S3 holds; cancelling removes it; a disguised
file shows the service's message. Direct uploads turned off, a declaration the service declines,
and an S3 the browser cannot reach all send the file by tus. Screenshots land in
test-artifacts/web/.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import httpx
import pytest
from mypy_boto3_s3 import S3Client
from playwright.sync_api import Error, Page, Response, Route, expect
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.e2e.web.browser import chromium, screenshot, serious_accessibility_violations
from tests.e2e.web.conftest import s3_page_settings
from tests.e2e.web.page_actions import document_row, drop, sign_in_by_keyboard, wait_until
from tests.fixtures.app import LiveServer
from tests.samples import TEXTS, pdf_bytes, png_bytes

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
PART = 8 * MIB  # The service's part size (documents/doors/direct/declare.py).
TOKEN = "sessionStorage.getItem('upload-service.token')"
README = Path(__file__).resolve().parents[3] / "README.md"


def large_pdf(tmp_path: Path, name: str) -> tuple[Path, bytes]:
    """A PDF of two parts: a full one and about 1 MiB."""
    content = pdf_bytes(TEXTS["contract"][0], padding_bytes=PART + MIB)
    path = tmp_path / name
    path.write_bytes(content)
    return path, content


def requests_to(page: Page, prefix: str) -> list[tuple[str, str]]:
    """(method, url) of every request the page sends under `prefix` from now on."""
    seen: list[tuple[str, str]] = []
    page.on(
        "request",
        lambda r: seen.append((r.method, r.url)) if r.url.startswith(prefix) else None,
    )
    return seen


def documents_by_name(server: LiveServer, token: str) -> dict[str, dict[str, object]]:
    listed = httpx.get(
        f"{server.url}/v1/documents",
        params={"limit": 100},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert listed.status_code == 200, listed.text
    return {document["filename"]: document for document in listed.json()["items"]}


def run_sql(
    database_url: str, statement: str, params: dict[str, object]
) -> list[tuple[object, ...]]:
    """Run one statement on the database (committed); its rows, if it returns any."""

    async def run() -> list[tuple[object, ...]]:
        engine = create_async_engine(database_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement), params)
                return [tuple(row) for row in result.all()] if result.returns_rows else []
        finally:
            await engine.dispose()

    # A thread of its own: Playwright's sync API keeps an event loop running in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(run())).result()


def classify_jobs(database_url: str, doc_ids: list[str]) -> dict[str, int]:
    """How many classify jobs each document has, read from the database."""
    rows = run_sql(
        database_url,
        "SELECT doc_id, count(*) FROM jobs WHERE kind = 'classify' AND doc_id = ANY(:ids)"
        " GROUP BY doc_id",
        {"ids": doc_ids},
    )
    return {str(doc_id): int(str(n)) for doc_id, n in rows}


def readme_cors_rule(origin: str) -> dict[str, object]:
    """The bucket CORS configuration README.md tells operators to set, for `origin`."""
    found = re.search(r"```json\s*(\{\s*\"CORSRules\".*?)```", README.read_text(), re.DOTALL)
    assert found, "README.md documents no bucket CORS configuration"
    configuration: dict[str, list[dict[str, object]]] = json.loads(found.group(1))
    [rule] = configuration["CORSRules"]
    return {"CORSRules": [{**rule, "AllowedOrigins": [origin]}]}


def part_number(url: str) -> int:
    found = re.search(r"[?&]partNumber=(\d+)", url)
    assert found, url
    return int(found.group(1))


class PartGate:
    """Holds back the part uploads (PUT) to S3 that `holds(part_number)` picks, so a test meets a
    live upload to pause, reload or cancel; `stored` lists the parts S3 answered 200 for."""

    def __init__(self, page: Page, moto_server: str, holds: Callable[[int], bool]) -> None:
        self._page, self._s3, self._holds = page, moto_server, holds
        self.held: list[Route] = []
        self.stored: list[int] = []
        page.on("response", self._count)

    def _count(self, response: Response) -> None:
        request = response.request
        if request.method == "PUT" and response.url.startswith(self._s3) and response.ok:
            self.stored.append(part_number(response.url))

    def _route(self, route: Route) -> None:
        if route.request.method == "PUT" and self._holds(part_number(route.request.url)):
            self.held.append(route)
            return
        route.continue_()

    def close(self) -> None:
        self._page.route(f"{self._s3}/**", self._route)

    def open(self) -> None:
        """Let everything through again, and drop what was held."""
        self._page.unroute(f"{self._s3}/**")
        for route in self.held:
            with contextlib.suppress(Error):  # A paused request is already gone.
                route.abort()
        self.held.clear()


def test_small_and_multipart_files_go_straight_to_s3_and_a_disguised_one_is_refused(
    direct_page_server: LiveServer,
    moto_server: str,
    pg_direct_url: str,
    s3_client: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    small = pdf_bytes(TEXTS["invoice"][0])
    large, large_content = large_pdf(tmp_path, "large.pdf")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        to_s3 = requests_to(page, moto_server)
        to_service = requests_to(page, f"{direct_page_server.url}/v1/uploads/")
        sign_in_by_keyboard(page, direct_page_server, "erin")
        offered = page.locator('meta[name="direct-uploads"]').get_attribute("content")
        assert offered == "on"

        drop(page, ("invoice.pdf", "application/pdf", small))
        page.locator("#file-input").set_input_files(str(large))
        for name in ("invoice.pdf", "large.pdf"):
            row = page.locator(f'li.upload[data-filename="{name}"]')
            expect(row).to_have_attribute("data-route", "direct")
        screenshot(page, "13-direct-uploading")
        for name in ("invoice.pdf", "large.pdf"):
            expect(document_row(page, name)).to_have_attribute(
                "data-status", "complete", timeout=60_000
            )
        screenshot(page, "14-direct-classified")

        # PNG bytes named .pdf: S3 takes them, the service refuses them at `complete`.
        drop(page, ("disguised.pdf", "application/pdf", png_bytes()))
        refused = page.locator('li.upload[data-filename="disguised.pdf"]')
        expect(refused).to_have_attribute("data-state", "refused", timeout=20_000)
        message = refused.locator(".status").inner_text()
        assert "pdf" in message.lower(), message
        assert "answered" not in message, message  # The service's words, not a status line,
        assert "HTTP" not in message, message  # nor S3's.

        # Over MAX_FILE_SIZE_MB (50): refused at the declaration, before a byte goes to S3.
        too_big = tmp_path / "too-big.pdf"
        with too_big.open("wb") as file:
            file.write(b"%PDF-1.4\n")
            file.truncate(51 * 1024 * 1024)
        page.locator("#file-input").set_input_files(str(too_big))
        big = page.locator('li.upload[data-filename="too-big.pdf"]')
        expect(big).to_have_attribute("data-state", "refused", timeout=20_000)
        expect(big.locator(".status")).to_contain_text(re.compile(r"limit|large|exceed", re.I))
        # A type the service does not take: refused at the declaration (422).
        drop(page, ("notes.txt", "text/plain", b"just some notes"))
        notes = page.locator('li.upload[data-filename="notes.txt"]')
        expect(notes).to_have_attribute("data-state", "refused", timeout=20_000)
        expect(notes.locator(".status")).to_contain_text(".txt")
        screenshot(page, "15-direct-refused")
        assert serious_accessibility_violations(page) == []
        expect(page.locator("#unfinished")).to_be_hidden()  # Nothing left to resume.
        token = page.evaluate(TOKEN)

    sent = [(method, url) for method, url in to_s3 if method in ("POST", "PUT")]
    posts = [url for method, url in sent if method == "POST"]
    puts = sorted(part_number(url) for method, url in sent if method == "PUT")
    assert len(posts) == 2  # invoice.pdf and disguised.pdf, one presigned POST each
    assert puts == [1, 2]  # large.pdf's two parts, each once
    assert all(s3_bucket in url for _, url in sent)
    assert not [url for _, url in to_service if "/v1/uploads/tus" in url]
    declared = [u for m, u in to_service if m == "POST" and u.endswith("/direct")]
    assert len(declared) == 5  # every file, the refused ones included

    documents = documents_by_name(direct_page_server, token)
    assert set(documents) == {"invoice.pdf", "large.pdf"}
    assert documents["invoice.pdf"]["sha256"] == hashlib.sha256(small).hexdigest()
    assert documents["large.pdf"]["sha256"] == hashlib.sha256(large_content).hexdigest()
    doc_ids = [str(document["doc_id"]) for document in documents.values()]
    assert classify_jobs(pg_direct_url, doc_ids) == dict.fromkeys(doc_ids, 1)
    # The refused bytes were deleted; what stays is the two documents' objects.
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket).get("Contents", [])]
    assert len(keys) == 2
    assert all(key.startswith("raw/") for key in keys)


def test_a_paused_upload_resumes_after_a_reload_from_the_parts_s3_holds_and_cancel_removes_one(
    direct_page_server: LiveServer,
    moto_server: str,
    s3_client: S3Client,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    large, content = large_pdf(tmp_path, "resume.pdf")
    with chromium(tmp_path / "profile", width=375, height=800) as browser:
        page = browser.new_page()
        sign_in_by_keyboard(page, direct_page_server, "frank")

        # Part 1 goes through; every later part is held, so the pause meets a live upload.
        gate = PartGate(page, moto_server, holds=lambda part: part != 1)
        gate.close()
        page.locator("#file-input").set_input_files(str(large))
        upload = page.locator('li.upload[data-filename="resume.pdf"]')
        expect(upload).to_have_attribute("data-route", "direct")
        wait_until(page, lambda: gate.stored == [1] and len(gate.held) == 1)
        upload.get_by_role("button", name="Pause resume.pdf").click()
        expect(upload).to_have_attribute("data-state", "paused")
        expect(upload.locator(".status")).to_contain_text("Paused at")
        screenshot(page, "16-direct-paused")
        assert serious_accessibility_violations(page) == []

        page.reload()
        gate.open()
        expect(page.locator("#unfinished")).to_contain_text("resume.pdf")
        after_reload = requests_to(page, moto_server)
        page.locator("#file-input").set_input_files(str(large))
        resumed = page.locator('li.upload[data-filename="resume.pdf"]')
        expect(resumed).to_have_attribute("data-resumed-from", str(PART), timeout=10_000)
        expect(resumed.locator(".status")).to_contain_text("resumed at")
        screenshot(page, "17-direct-resumed")
        document = document_row(page, "resume.pdf")
        expect(document).to_have_attribute("data-status", "complete", timeout=60_000)
        expect(page.locator("#unfinished")).to_be_hidden()
        # Only the part S3 did not hold was sent again.
        assert [part_number(u) for m, u in after_reload if m == "PUT"] == [2]
        token = page.evaluate(TOKEN)
        assert documents_by_name(direct_page_server, token)["resume.pdf"]["sha256"] == (
            hashlib.sha256(content).hexdigest()
        )

        # Cancel: the service removes the upload (DELETE), and S3 keeps nothing of it.
        gate.close()
        page.locator("#file-input").set_input_files(str(large))
        second = page.locator('li.upload[data-filename="resume.pdf"][data-state="uploading"]')
        wait_until(page, lambda: len(gate.held) == 1)
        with page.expect_response(
            lambda r: r.request.method == "DELETE" and "/v1/uploads/direct/" in r.url
        ) as deleted:
            second.get_by_role("button", name="Cancel resume.pdf").click()
        assert deleted.value.status == 204
        cancelled = page.locator('li.upload[data-filename="resume.pdf"][data-state="cancelled"]')
        expect(cancelled.locator(".status")).to_have_text("Cancelled")
        screenshot(page, "18-direct-cancelled")
        gate.open()
    assert s3_client.list_multipart_uploads(Bucket=s3_bucket).get("Uploads", []) == []


def test_pause_and_resume_in_the_page_sends_only_the_parts_s3_lacks(
    direct_page_server: LiveServer, moto_server: str, tmp_path: Path
) -> None:
    large, content = large_pdf(tmp_path, "again.pdf")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        sign_in_by_keyboard(page, direct_page_server, "kim")
        gate = PartGate(page, moto_server, holds=lambda part: part != 1)
        gate.close()
        page.locator("#file-input").set_input_files(str(large))
        upload = page.locator('li.upload[data-filename="again.pdf"]')
        wait_until(page, lambda: gate.stored == [1] and len(gate.held) == 1)
        upload.get_by_role("button", name="Pause again.pdf").click()
        expect(upload).to_have_attribute("data-state", "paused")
        gate.open()
        upload.get_by_role("button", name="Resume again.pdf").click()
        expect(upload).to_have_attribute("data-state", "done", timeout=60_000)
        assert gate.stored == [1, 2]  # Part 1 was not sent again.
        token = page.evaluate(TOKEN)
    document = documents_by_name(direct_page_server, token)["again.pdf"]
    assert document["sha256"] == hashlib.sha256(content).hexdigest()


def test_an_upload_that_expired_meanwhile_starts_over(
    direct_page_server: LiveServer, moto_server: str, pg_direct_url: str, tmp_path: Path
) -> None:
    large, content = large_pdf(tmp_path, "late.pdf")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        sign_in_by_keyboard(page, direct_page_server, "jane")
        gate = PartGate(page, moto_server, holds=lambda part: True)
        gate.close()
        page.locator("#file-input").set_input_files(str(large))
        wait_until(page, lambda: len(gate.held) >= 1)
        page.reload()
        gate.open()
        expect(page.locator("#unfinished")).to_contain_text("late.pdf")

        # Past its URLs' lifetime and grace (what the janitor expires): the service answers 410.
        [(first_id,)] = run_sql(
            pg_direct_url,
            "UPDATE direct_uploads SET expires_at = now() - interval '1 day' RETURNING id",
            {},
        )
        to_service = requests_to(page, f"{direct_page_server.url}/v1/uploads/direct")
        page.locator("#file-input").set_input_files(str(large))
        expect(document_row(page, "late.pdf")).to_have_attribute(
            "data-status", "complete", timeout=60_000
        )
        token = page.evaluate(TOKEN)
    # It asked after the old upload (410), then declared a new one and completed that.
    asked = [(m, u.rsplit("/v1/uploads/direct", 1)[1]) for m, u in to_service]
    assert asked[0] == ("GET", f"/{first_id}")
    assert asked[1] == ("POST", "")
    assert asked[-1][0] == "POST"
    assert asked[-1][1].endswith("/complete")
    assert f"/{first_id}" not in asked[-1][1]
    documents = documents_by_name(direct_page_server, token)
    assert documents["late.pdf"]["sha256"] == hashlib.sha256(content).hexdigest()


def test_files_go_by_tus_when_s3_is_out_of_reach_or_the_service_declines(
    direct_page_server: LiveServer, moto_server: str, tmp_path: Path
) -> None:
    large, _content = large_pdf(tmp_path, "far.pdf")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        sign_in_by_keyboard(page, direct_page_server, "gina")
        to_service = requests_to(page, f"{direct_page_server.url}/v1/uploads/")

        # S3 out of this browser's reach (as when its CORS rule refuses the page's origin).
        page.route(f"{moto_server}/**", lambda route: route.abort())
        drop(page, ("near.pdf", "application/pdf", pdf_bytes(TEXTS["invoice"][0])))
        near = page.locator('li.upload[data-filename="near.pdf"]')
        expect(near).to_have_attribute("data-route", "tus", timeout=10_000)
        expect(document_row(page, "near.pdf")).to_have_attribute(
            "data-status", "complete", timeout=30_000
        )
        # The declared direct upload was removed, and the next file goes by tus at once.
        assert [m for m, u in to_service if "/v1/uploads/direct/" in u] == ["DELETE"]
        declared = len([u for m, u in to_service if m == "POST" and u.endswith("/direct")])
        page.locator("#file-input").set_input_files(str(large))
        expect(document_row(page, "far.pdf")).to_have_attribute(
            "data-status", "complete", timeout=60_000
        )
        assert len([u for m, u in to_service if m == "POST" and u.endswith("/direct")]) == declared
        page.unroute(f"{moto_server}/**")

        # A service that declines the declaration (501): the file goes by tus.
        page.reload()
        expect(page.locator("#live")).to_have_text("Live", timeout=5000)
        page.route(
            "**/v1/uploads/direct",
            lambda route: route.fulfill(
                status=501,
                content_type="application/json",
                body='{"error_code": "NOT_IMPLEMENTED", "message": "No direct uploads here"}',
            ),
        )
        drop(page, ("declined.png", "image/png", png_bytes(32, 32)))
        declined = page.locator('li.upload[data-filename="declined.png"]')
        expect(declined).to_have_attribute("data-route", "tus", timeout=10_000)
        expect(document_row(page, "declined.png")).to_have_attribute(
            "data-status", "complete", timeout=30_000
        )
        screenshot(page, "19-direct-fell-back-to-tus")
    tus = [u for m, u in to_service if m == "POST" and u.endswith("/v1/uploads/tus")]
    assert len(tus) == 3


def test_with_direct_uploads_off_the_page_uses_tus_alone(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    pg_clean: object,
    moto_server: str,
    s3_bucket: str,
    tmp_path: Path,
) -> None:
    server = live_server(
        {**s3_page_settings(pg_url, moto_server, s3_bucket), "DIRECT_UPLOADS": "false"}
    )
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        to_service = requests_to(page, f"{server.url}/v1/uploads/")
        sign_in_by_keyboard(page, server, "hugo")
        assert page.locator('meta[name="direct-uploads"]').get_attribute("content") == "off"
        drop(page, ("plain.pdf", "application/pdf", pdf_bytes(TEXTS["letter"][0])))
        expect(page.locator('li.upload[data-filename="plain.pdf"]')).to_have_attribute(
            "data-route", "tus"
        )
        expect(document_row(page, "plain.pdf")).to_have_attribute(
            "data-status", "complete", timeout=30_000
        )
    assert [u for _, u in to_service if "/v1/uploads/direct" in u] == []
    assert [u for m, u in to_service if m == "POST" and u.endswith("/v1/uploads/tus")] != []


def test_the_readme_bucket_cors_rule_is_what_the_page_needs_and_without_one_tus_takes_over(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    pg_clean: object,
    strict_cors_moto_server: str,
    tmp_path: Path,
) -> None:
    s3 = boto3.session.Session().client(
        "s3", endpoint_url=strict_cors_moto_server, region_name="us-east-1"
    )
    bucket = f"test-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=bucket)
    server = live_server(s3_page_settings(pg_url, strict_cors_moto_server, bucket))
    s3.put_bucket_cors(Bucket=bucket, CORSConfiguration=readme_cors_rule(server.url))  # type: ignore[arg-type]
    large, _content = large_pdf(tmp_path, "ruled.pdf")
    with chromium(tmp_path / "profile") as browser:
        page = browser.new_page()
        to_s3 = requests_to(page, strict_cors_moto_server)
        sign_in_by_keyboard(page, server, "iris")
        # Multipart only: moto answers a presigned POST without the CORS headers its rule gives
        # (S3 sends them), so the browser could not read the answer. The POST is tested above.
        page.locator("#file-input").set_input_files(str(large))
        row = page.locator('li.upload[data-filename="ruled.pdf"]')
        expect(row).to_have_attribute("data-state", "done", timeout=60_000)
        assert row.get_attribute("data-route") == "direct"
        expect(document_row(page, "ruled.pdf")).to_have_attribute(
            "data-status", "complete", timeout=30_000
        )
        sent = [part_number(url) for method, url in to_s3 if method == "PUT"]
        assert sorted(sent) == [1, 2]

        # A bucket with no CORS rule: the browser may not send to it, and tus takes the file.
        s3.delete_bucket_cors(Bucket=bucket)
        page.reload()
        expect(page.locator("#live")).to_have_text("Live", timeout=5000)
        unruled_file, _content = large_pdf(tmp_path, "unruled.pdf")
        page.locator("#file-input").set_input_files(str(unruled_file))
        unruled = page.locator('li.upload[data-filename="unruled.pdf"]')
        expect(unruled).to_have_attribute("data-route", "tus", timeout=10_000)
        expect(document_row(page, "unruled.pdf")).to_have_attribute(
            "data-status", "complete", timeout=60_000
        )
        screenshot(page, "20-no-bucket-cors-rule-tus")
    s3.close()

"""One file over tus across runs: the entry survives an interruption and the next run resumes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from tests.unit.cli.fake_tus import FakeTusServer
from upload_service.cli.outcomes import UploadOutcome
from upload_service.cli.resumable import ProgressHooks, upload_resumably
from upload_service.cli.resume_store import LocalFile, ResumeStore
from upload_service.cli.tus_client import SLICE, Backoff, TusClient

CHUNK = 2 * SLICE
DATA = b"%PDF-" + os.urandom(5 * CHUNK + 77)


class Run:
    """One run of the command against the fake server: what it showed, what it sent."""

    def __init__(self, server: FakeTusServer, tmp_path: Path) -> None:
        self.client = server.client()
        self.tus = TusClient(self.client, chunk_size=CHUNK, backoff=Backoff((0.0,)))
        self.store = ResumeStore(tmp_path / "state")
        self.resumed_at: list[int] = []
        self.completed = 0
        self.sent = 0

    def upload(self, path: Path) -> UploadOutcome:
        file = LocalFile.of(path, server=str(self.client.base_url), subject="alice")
        hooks = ProgressHooks(
            on_offset=self._on_offset, on_sent=self._on_sent, on_resume=self.resumed_at.append
        )
        return upload_resumably(self.client, self.tus, self.store, file, hooks)

    def _on_offset(self, offset: int) -> None:
        self.completed = offset

    def _on_sent(self, n: int) -> None:
        self.sent += n
        self.completed += n

    def remembered(self, path: Path) -> str | None:
        entry = self.store.find(LocalFile.of(path, server="http://fake.test", subject="alice"))
        return None if entry is None else entry.upload_url


def a_pdf(tmp_path: Path) -> Path:
    path = tmp_path / "big.pdf"
    path.write_bytes(DATA)
    return path


def test_a_run_that_gave_up_is_resumed_by_the_next_from_the_servers_offset(
    tmp_path: Path,
) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    first = Run(server, tmp_path)
    # Two chunks get through, then the network is lost for longer than the backoff lasts.
    server.next_patch.extend(["", "", "cut:1000", "503", "503"])
    outcome = first.upload(path)
    assert outcome.doc_id is None
    assert outcome.error is not None
    assert outcome.error.startswith("gave up after 2 attempts")
    assert first.remembered(path) == "http://fake.test/v1/uploads/tus/u1"

    second = Run(server, tmp_path)
    outcome = second.upload(path)
    held = 2 * CHUNK + 1000
    assert second.resumed_at == [held]  # The progress bar starts at the server's offset.
    assert second.sent == len(DATA) - held  # Only the remainder is sent.
    assert second.completed == len(DATA)
    assert outcome.doc_id is not None
    assert outcome.error is None
    assert bytes(server.uploads["u1"].data) == DATA
    assert len(server.uploads) == 1
    assert second.remembered(path) is None  # Cleaned after success.


def test_the_entry_is_written_before_the_first_byte(tmp_path: Path) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    run = Run(server, tmp_path)
    seen: list[str | None] = []

    def record_entry_at_first_patch(request: httpx.Request) -> None:
        if request.method == "PATCH" and not seen:
            seen.append(run.remembered(path))

    server.before_request = record_entry_at_first_patch
    assert run.upload(path).doc_id is not None
    assert seen == ["http://fake.test/v1/uploads/tus/u1"]


def test_an_upload_the_server_lost_is_forgotten_and_begun_again(tmp_path: Path) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    first = Run(server, tmp_path)
    server.next_patch.extend(["", "503", "503"])
    assert first.upload(path).error is not None
    server.uploads["u1"].gone = True  # Expired on the server meanwhile.

    second = Run(server, tmp_path)
    outcome = second.upload(path)
    assert outcome.doc_id is not None
    assert second.sent == len(DATA)
    assert bytes(server.uploads["u2"].data) == DATA
    assert second.remembered(path) is None


def test_a_file_changed_since_gets_a_new_upload_and_the_old_one_is_terminated(
    tmp_path: Path,
) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    first = Run(server, tmp_path)
    server.next_patch.extend(["", "503", "503"])
    first.upload(path)
    changed = b"%PDF-" + os.urandom(len(DATA) - 5)
    path.write_bytes(changed)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))

    outcome = Run(server, tmp_path).upload(path)
    assert outcome.doc_id is not None
    assert server.uploads["u1"].gone
    assert "DELETE /v1/uploads/tus/u1" in server.requests
    assert bytes(server.uploads["u2"].data) == changed


def test_a_refused_type_forgets_the_upload_and_says_why(tmp_path: Path) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    run = Run(server, tmp_path)
    server.next_patch.append("422")
    outcome = run.upload(path)
    assert outcome.error == "UNSUPPORTED_FILE_TYPE: UNSUPPORTED_FILE_TYPE said the fake"
    assert run.remembered(path) is None


def test_a_refusal_worth_retrying_later_keeps_the_entry(tmp_path: Path) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    run = Run(server, tmp_path)
    server.next_patch.append("401")
    outcome = run.upload(path)
    assert outcome.error == "SCRIPTED: SCRIPTED said the fake"
    assert run.remembered(path) is not None


def test_stored_bytes_that_differ_from_the_file_are_reported(tmp_path: Path) -> None:
    server, path = FakeTusServer(), a_pdf(tmp_path)
    server.wrong_sha256 = True
    outcome = Run(server, tmp_path).upload(path)
    assert outcome.doc_id is not None
    assert outcome.error == "the stored bytes differ from the file (changed?)"

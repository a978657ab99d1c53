"""The command line's tus client: creation, streamed chunks, resume from the server's offset."""

from __future__ import annotations

import io
import os

import pytest

from tests.unit.cli.fake_tus import FakeTusServer
from upload_service.cli.tus_client import (
    SLICE,
    Backoff,
    TusClient,
    TusUnavailable,
    UploadGone,
    UploadRefused,
)

CHUNK = 3 * SLICE + 5
DATA = b"%PDF-" + os.urandom(4 * CHUNK + 1234)


class Recorder:
    """Offsets the client reported, bytes it sent, pauses it took."""

    def __init__(self) -> None:
        self.offsets: list[int] = []
        self.sent = 0
        self.sleeps: list[float] = []

    def on_sent(self, n: int) -> None:
        self.sent += n


def tus_client(server: FakeTusServer, recorder: Recorder) -> TusClient:
    return TusClient(
        server.client(),
        chunk_size=CHUNK,
        backoff=Backoff((0.1, 0.2, 0.4)),
        sleep=recorder.sleeps.append,
    )


def send(client: TusClient, url: str, recorder: Recorder, data: bytes = DATA) -> str:
    return client.send(
        url,
        io.BytesIO(data),
        len(data),
        on_offset=recorder.offsets.append,
        on_sent=recorder.on_sent,
    )


def test_creation_sends_length_and_base64_metadata_and_resolves_a_relative_location() -> None:
    server, recorder = FakeTusServer(), Recorder()
    url = tus_client(server, recorder).create(
        1234, {"filename": "rapport d'été.pdf", "filetype": "application/pdf"}
    )
    assert url == "http://fake.test/v1/uploads/tus/u1"
    upload = server.uploads["u1"]
    assert upload.length == 1234
    assert upload.metadata == {"filename": "rapport d'été.pdf", "filetype": "application/pdf"}


def test_file_goes_in_chunk_sized_patches_streamed_in_bounded_slices() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    location = send(client, url, recorder)
    upload = server.uploads["u1"]
    assert bytes(upload.data) == DATA
    assert location == f"/v1/documents/{upload.doc_id}"
    assert [p.declared for p in server.patches] == [CHUNK] * 4 + [len(DATA) - 4 * CHUNK]
    assert [p.offset for p in server.patches] == [i * CHUNK for i in range(5)]
    assert max(max(p.slices) for p in server.patches) <= SLICE  # Memory: one slice at a time.
    assert recorder.offsets == [0, *(p.offset + p.declared for p in server.patches)]
    assert recorder.sent == len(DATA)
    assert server.requests.count("HEAD /v1/uploads/tus/u1") == 1  # Only to begin.


def test_a_dropped_connection_resumes_from_the_offset_the_server_kept() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.next_patch.extend(["", "cut:1000"])  # The second PATCH keeps 1000 bytes, then drops.
    send(client, url, recorder)
    assert bytes(server.uploads["u1"].data) == DATA
    # After the drop: a HEAD, and the next PATCH starts where the server's bytes end.
    assert server.patches[2].offset == CHUNK + 1000
    assert CHUNK + 1000 in recorder.offsets
    assert recorder.sleeps == [0.1]
    # The bytes sent again are at most what the dropped PATCH had in flight past the cut.
    assert recorder.sent - len(DATA) <= SLICE


@pytest.mark.parametrize("status", [409, 423, 500, 503, 408])
def test_transient_answers_are_retried_after_a_head(status: int) -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.next_patch.extend(["", str(status), str(status)])
    send(client, url, recorder)
    assert bytes(server.uploads["u1"].data) == DATA
    assert recorder.sleeps == [0.1, 0.2]  # Backoff grows while failures follow each other.
    assert server.requests.count("HEAD /v1/uploads/tus/u1") == 3


def test_backoff_restarts_after_a_chunk_gets_through() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.next_patch.extend(["503", "503", "", "503", "503", ""])
    send(client, url, recorder)
    assert recorder.sleeps == [0.1, 0.2, 0.1, 0.2]


def test_retries_are_bounded() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.next_patch.extend(["503"] * 10)
    with pytest.raises(UploadRefused, match="gave up after 4 attempts: SCRIPTED") as refused:
        send(client, url, recorder)
    assert not refused.value.final  # Worth resuming later.
    assert recorder.sleeps == [0.1, 0.2, 0.4]


def test_a_refused_type_is_final_and_reported_from_the_envelope() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.next_patch.append("422")
    with pytest.raises(UploadRefused) as refused:
        send(client, url, recorder)
    assert refused.value.final
    assert refused.value.message == "UNSUPPORTED_FILE_TYPE: UNSUPPORTED_FILE_TYPE said the fake"
    assert recorder.sleeps == []


def test_an_unknown_or_expired_upload_is_gone() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    with pytest.raises(UploadGone):
        send(client, "http://fake.test/v1/uploads/tus/nope", recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    server.uploads["u1"].gone = True
    with pytest.raises(UploadGone):
        send(client, url, recorder)


def test_creation_refusals_are_reported_with_retry_after_and_5xx_retried() -> None:
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    server.next_create.append(429)
    with pytest.raises(UploadRefused, match=r"SCRIPTED: .* \(retry after 7 s\)"):
        client.create(10, {"filename": "a.pdf"})
    server.next_create.extend([503, 502])
    assert client.create(10, {"filename": "a.pdf"}).endswith("/v1/uploads/tus/u1")
    assert recorder.sleeps == [0.1, 0.2]


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_server_without_a_tus_endpoint_is_told_apart_at_once(status: int) -> None:
    server, recorder = FakeTusServer(), Recorder()
    server.next_create.append(status)
    with pytest.raises(TusUnavailable, match=f"answered HTTP {status}"):
        tus_client(server, recorder).create(10, {"filename": "a.pdf"})
    assert recorder.sleeps == []  # Not retried: no tus endpoint will appear.


def test_a_finished_upload_is_not_sent_again() -> None:
    """A lost final answer: the next run's HEAD names the document, and nothing is resent."""
    server, recorder = FakeTusServer(), Recorder()
    client = tus_client(server, recorder)
    url = client.create(len(DATA), {"filename": "a.pdf"})
    first = send(client, url, recorder)
    patches, again = len(server.patches), Recorder()
    assert send(client, url, again) == first
    assert len(server.patches) == patches
    assert again.sent == 0
    assert again.offsets == [len(DATA)]

"""The command-line uploader: an exact, streamed multipart body, or tus above a threshold."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path
from typing import Literal

import httpx
import pytest
from rich.console import Console

from tests.unit.cli.fake_tus import FakeTusServer
from upload_service.cli.command import byte_size
from upload_service.cli.resume_store import LocalFile, ResumeStore
from upload_service.cli.uploader import (
    SLICE,
    TusOptions,
    UploadOutcome,
    describe_error,
    multipart_body,
    upload_files,
)


def test_body_is_streamed_in_bounded_slices_with_an_exact_length(tmp_path: Path) -> None:
    path = tmp_path / 'big "report".pdf'
    path.write_bytes(b"%PDF-" + b"x" * (3 * SLICE + 17))
    sent: list[int] = []
    length, body = multipart_body(path, "b0undary", on_sent=sent.append)
    pieces = list(body)
    assert sum(len(piece) for piece in pieces) == length
    assert max(len(piece) for piece in pieces) <= SLICE
    assert sum(sent) == path.stat().st_size
    joined = b"".join(pieces)
    assert b'filename="big %22report%22.pdf"' in joined
    assert joined.endswith(b"\r\n--b0undary--\r\n")


def test_errors_are_read_from_the_envelope() -> None:
    response = httpx.Response(
        413, json={"error_code": "FILE_TOO_LARGE", "message": "too big", "request_id": "r"}
    )
    assert describe_error(response) == "FILE_TOO_LARGE: too big"
    assert describe_error(httpx.Response(502, text="<html>")) == "HTTP 502"


@pytest.mark.parametrize(
    ("mode", "size", "over_tus"),
    [
        ("auto", 8 * SLICE, False),
        ("auto", 8 * SLICE + 1, True),
        ("always", 1, True),
        ("always", 0, False),  # An empty file has nothing to resume: the service refuses it.
        ("never", 10**9, False),
    ],
)
def test_tus_is_used_above_the_threshold_or_when_asked(
    mode: Literal["auto", "always", "never"], size: int, over_tus: bool
) -> None:
    assert TusOptions(mode=mode, threshold=8 * SLICE).applies_to(size) is over_tus


def test_sizes_on_the_command_line_read_binary_units() -> None:
    assert byte_size("8MiB") == 8 * 1024 * 1024
    assert byte_size("512KiB") == 512 * 1024
    assert byte_size("64k") == 64 * 1024
    assert byte_size("1048576") == 1048576
    for bad in ("0", "-1", "8XB", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            byte_size(bad)


def test_ctrl_c_keeps_the_upload_and_the_next_run_resumes_it(tmp_path: Path) -> None:
    server = FakeTusServer()
    path = tmp_path / "big.pdf"
    path.write_bytes(b"%PDF-" + os.urandom(5 * SLICE))
    tus = TusOptions(mode="auto", threshold=SLICE, chunk_size=SLICE, state_dir=tmp_path / "s")
    patches = 0

    def ctrl_c_at_the_third_patch(request: httpx.Request) -> None:
        nonlocal patches
        if request.method == "PATCH":
            patches += 1
            if patches == 3:
                raise KeyboardInterrupt

    server.before_request = ctrl_c_at_the_third_patch
    output = io.StringIO()

    def run() -> list[UploadOutcome]:
        return upload_files(
            [path],
            url="http://fake.test",
            token="t",
            tus=tus,
            console=Console(file=output, width=200),
            transport=server.transport(),
        )

    (interrupted,) = run()
    assert interrupted.interrupted
    assert interrupted.error == "interrupted: run the same command again to resume"
    assert ResumeStore(tmp_path / "s").find(
        LocalFile.of(path, server="http://fake.test", subject="")
    )
    (done,) = run()
    assert done.error is None
    assert done.doc_id is not None
    assert f"big.pdf: resuming from byte {2 * SLICE} of {5 * SLICE + 5}" in output.getvalue()
    assert bytes(server.uploads["u1"].data) == path.read_bytes()
    assert [p.offset for p in server.patches] == [
        0,
        SLICE,
        2 * SLICE,
        3 * SLICE,
        4 * SLICE,
        5 * SLICE,
    ]
    assert (
        ResumeStore(tmp_path / "s").find(LocalFile.of(path, server="http://fake.test", subject=""))
        is None
    )


def test_a_small_file_goes_as_one_multipart_request(tmp_path: Path) -> None:
    path = tmp_path / "small.pdf"
    path.write_bytes(b"%PDF-small")
    requests: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(f"{request.method} {request.url.path}")
        return httpx.Response(202, json={"doc_id": "doc_1", "status": "queued"})

    (outcome,) = upload_files(
        [path],
        url="http://fake.test",
        token="t",
        tus=TusOptions(state_dir=tmp_path / "s"),
        console=Console(file=io.StringIO()),
        transport=httpx.MockTransport(handler),
    )
    assert outcome.doc_id == "doc_1"
    assert requests == ["POST /v1/documents"]
    assert not (tmp_path / "s").exists()

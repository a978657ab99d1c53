"""The command-line uploader builds an exact, streamed multipart body."""

from __future__ import annotations

from pathlib import Path

import httpx

from upload_service.cli.uploader import SLICE, describe_error, multipart_body


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

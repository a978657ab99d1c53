"""The command-line uploader: an exact, streamed multipart body, or tus above a threshold."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Literal

import httpx
import pytest

from upload_service.cli.command import byte_size
from upload_service.cli.uploader import SLICE, TusOptions, describe_error, multipart_body


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

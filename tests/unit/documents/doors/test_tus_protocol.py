"""The tus headers as the door reads them: lengths, metadata, checksums, dates."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from upload_service.documents.doors.tus.protocol import (
    MAX_METADATA_BYTES,
    http_date,
    is_offset_stream,
    parse_checksum,
    parse_length,
    parse_metadata,
)
from upload_service.documents.doors.tus.running_checks import RunningChecks
from upload_service.documents.pipeline.checks import StreamCheck
from upload_service.errors import TusRequestInvalid


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


@pytest.mark.parametrize("raw", ["0", "1", " 52428800 ", "9" * 19])
def test_a_length_is_decimal_digits(raw: str) -> None:
    assert parse_length(raw, "Upload-Length") == int(raw)


@pytest.mark.parametrize("raw", [None, "", "-1", "1.5", "0x10", "1e3", "+4", "9" * 20, "١٢"])
def test_anything_else_as_a_length_is_400(raw: str | None) -> None:
    with pytest.raises(TusRequestInvalid) as caught:
        parse_length(raw, "Upload-Length")
    assert caught.value.status_code == 400
    assert "Upload-Length" in caught.value.message


def test_metadata_pairs_decode_and_a_key_may_have_no_value() -> None:
    name, kind = b64("résumé.pdf".encode()), b64(b"application/pdf")
    raw = f"filename {name},filetype {kind}, is_confidential"
    assert parse_metadata(raw) == {
        "filename": "résumé.pdf".encode(),
        "filetype": b"application/pdf",
        "is_confidential": b"",
    }


def test_no_metadata_is_no_pairs() -> None:
    assert parse_metadata(None) == {}
    assert parse_metadata("  ") == {}


@pytest.mark.parametrize(
    "raw",
    [
        "filename not*base64",
        f"filename {b64(b'a')},filename {b64(b'b')}",  # a key twice
        f"filename {b64(b'a')} {b64(b'b')}",  # two values
        f"file name {b64(b'a')}",  # a space in the key
        f"filename {b64(b'a')},,",  # an empty pair
    ],
)
def test_malformed_metadata_is_400(raw: str) -> None:
    with pytest.raises(TusRequestInvalid):
        parse_metadata(raw)


def test_metadata_over_4_kib_is_400() -> None:
    raw = f"filename {b64(b'x' * MAX_METADATA_BYTES)}"
    with pytest.raises(TusRequestInvalid, match="longer than"):
        parse_metadata(raw)


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "SHA256"])
def test_a_checksum_names_its_algorithm_and_digest(algorithm: str) -> None:
    digest = hashlib.new(algorithm.lower(), b"body").digest()
    parsed = parse_checksum(f"{algorithm} {b64(digest)}")
    assert parsed is not None
    assert parsed.algorithm == algorithm.lower()
    assert parsed.digest == digest
    hasher = parsed.new_hasher()
    hasher.update(b"body")
    assert hasher.digest() == digest


@pytest.mark.parametrize(
    "raw",
    [
        f"md5 {b64(bytes(16))}",  # not offered
        f"crc32 {b64(b'1234')}",
        "sha1 !!!",  # not base64
        f"sha256 {b64(bytes(20))}",  # a sha1-sized digest for sha256
        "sha1",
    ],
)
def test_an_unknown_algorithm_or_a_bad_digest_is_400(raw: str) -> None:
    with pytest.raises(TusRequestInvalid):
        parse_checksum(raw)


def test_no_checksum_header_is_no_checksum() -> None:
    assert parse_checksum(None) is None


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/offset+octet-stream", True),
        ("Application/Offset+Octet-Stream; charset=binary", True),
        ("application/octet-stream", False),
        (None, False),
    ],
)
def test_only_the_offset_stream_is_a_tus_body(content_type: str | None, expected: bool) -> None:
    assert is_offset_stream(content_type) is expected


def test_expiry_dates_are_rfc_9110_in_gmt() -> None:
    moment = datetime(2026, 12, 2, 4, 16, 48, 123456, tzinfo=UTC)
    assert http_date(moment) == "Wed, 02 Dec 2026 04:16:48 GMT"
    assert parsedate_to_datetime(http_date(moment)) == moment.replace(microsecond=0)


async def _pumped(data: bytes) -> StreamCheck:
    check = StreamCheck("a.pdf", max_bytes=1000, allowed_extensions=[".pdf"])

    async def chunks() -> AsyncIterator[bytes]:
        yield data

    await check.pump(chunks(), None)
    return check


async def test_a_running_check_continues_only_at_the_offset_it_reached() -> None:
    checks = RunningChecks()
    check = await _pumped(b"%PDF-1.7")
    checks.keep("up", check)
    assert checks.take("up", 7) is None  # Not where it stands: gone, never shared.
    checks.keep("up", check)
    assert checks.take("up", 8) is check
    assert checks.take("up", 8) is None  # Handed over once.


async def test_running_checks_forget_the_least_recently_used_first() -> None:
    checks = RunningChecks(capacity=2)
    for name in ("a", "b", "c"):
        checks.keep(name, await _pumped(b"%PDF-"))
    assert len(checks) == 2
    assert checks.take("a", 5) is None
    assert checks.take("c", 5) is not None

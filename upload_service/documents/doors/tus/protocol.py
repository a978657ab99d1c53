"""The tus 1.0.0 headers: what the server offers, and parsing what a client sends.

Only the parsing lives here (no HTTP framework): a header that breaks the protocol is a
`TusRequestInvalid` (400), an unknown checksum algorithm included, as tus's checksum extension
asks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

from upload_service.errors import TusRequestInvalid

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS = ("sha1", "sha256")
OFFSET_STREAM = "application/offset+octet-stream"
# Metadata is echoed back on HEAD and stored as sent: bounded, as the contract says.
MAX_METADATA_BYTES = 4096
_MAX_DIGITS = 19  # Larger than any file we accept, smaller than a BIGINT overflow.


@dataclass(frozen=True, slots=True)
class Checksum:
    """An `Upload-Checksum`: the algorithm and the digest the request body must have."""

    algorithm: str
    digest: bytes

    def new_hasher(self) -> hashlib._Hash:
        """A fresh hasher of the algorithm, to feed the body through."""
        return hashlib.new(self.algorithm)


def parse_length(raw: str | None, header: str) -> int:
    """A non-negative byte count in decimal digits (`Upload-Length`, `Upload-Offset`)."""
    if raw is None:
        raise TusRequestInvalid(f"{header} is required")
    value = raw.strip()
    if not value.isascii() or not value.isdigit() or len(value) > _MAX_DIGITS:
        raise TusRequestInvalid(f"{header} must be a non-negative integer")
    return int(value)


def parse_metadata(raw: str | None) -> dict[str, bytes]:
    """`Upload-Metadata`: comma-separated `key base64value` pairs (the value may be absent)."""
    if raw is None or not raw.strip():
        return {}
    if len(raw.encode("latin-1", "replace")) > MAX_METADATA_BYTES:
        raise TusRequestInvalid(f"Upload-Metadata is longer than {MAX_METADATA_BYTES} bytes")
    pairs: dict[str, bytes] = {}
    for item in raw.split(","):
        parts = item.strip().split(" ")
        key = parts[0]
        if not key or len(parts) > 2 or key in pairs:
            raise TusRequestInvalid("Upload-Metadata has an empty, repeated or malformed key")
        try:
            pairs[key] = base64.b64decode(parts[1], validate=True) if len(parts) == 2 else b""
        except (binascii.Error, ValueError):
            raise TusRequestInvalid(f"Upload-Metadata value of {key!r} is not base64") from None
    return pairs


def metadata_text(metadata: dict[str, bytes], key: str) -> str:
    """A metadata value as text (UTF-8, undecodable bytes replaced); empty when absent."""
    return metadata.get(key, b"").decode("utf-8", "replace")


def parse_checksum(raw: str | None) -> Checksum | None:
    """`Upload-Checksum: <algorithm> <base64 digest>`; 400 for an algorithm we do not offer."""
    if raw is None:
        return None
    algorithm, _, encoded = raw.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUM_ALGORITHMS:
        raise TusRequestInvalid(
            f"Upload-Checksum algorithm {algorithm!r} is not supported "
            f"(use one of {', '.join(CHECKSUM_ALGORITHMS)})"
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise TusRequestInvalid("Upload-Checksum digest is not base64") from None
    if len(digest) != hashlib.new(algorithm).digest_size:
        raise TusRequestInvalid(f"Upload-Checksum digest is not a {algorithm} digest")
    return Checksum(algorithm, digest)


def is_offset_stream(content_type: str | None) -> bool:
    """Whether a body is declared `application/offset+octet-stream` (parameters ignored)."""
    if content_type is None:
        return False
    return content_type.split(";", 1)[0].strip().lower() == OFFSET_STREAM


def http_date(moment: datetime) -> str:
    """An RFC 9110 date (`Wed, 02 Dec 2026 04:16:48 GMT`), as `Upload-Expires` carries it."""
    return format_datetime(moment.astimezone(UTC).replace(microsecond=0), usegmt=True)

"""The threaded stream digest equals hashlib's, whatever the chunking."""

from __future__ import annotations

import hashlib
import os

import pytest

from upload_service.documents.hashing import StreamDigest


@pytest.mark.parametrize("chunk", [1, 1000, 65536, 3 * 1024 * 1024])
async def test_digest_matches_hashlib(chunk: int) -> None:
    data = os.urandom(5 * 1024 * 1024 + 7)
    digest = StreamDigest()
    for start in range(0, len(data), chunk):
        await digest.update(data[start : start + chunk])
    assert await digest.hexdigest() == hashlib.sha256(data).hexdigest()


async def test_empty_stream_has_the_empty_digest() -> None:
    assert await StreamDigest().hexdigest() == hashlib.sha256(b"").hexdigest()

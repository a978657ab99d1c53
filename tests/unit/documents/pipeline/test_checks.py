"""The pipeline's checks as a door calls them: bytes fed as they come, or an object read back."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.samples import PDF, pdf_bytes, png_bytes
from upload_service.documents.pipeline.checks import StreamCheck, verify_stored
from upload_service.errors import EmptyFile, FileTooLarge, UnsupportedFileType
from upload_service.storage.local import LocalStorage

ALLOWED = [".pdf", ".png", ".jpg", ".jpeg", ".docx"]
MIB = 1024 * 1024


class Source:
    """The chunks a door would receive, counting how many were taken."""

    def __init__(self, content: bytes, chunk_size: int = 64 * 1024) -> None:
        self._chunks = [content[i : i + chunk_size] for i in range(0, len(content), chunk_size)]
        self.taken = 0

    async def chunks(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            self.taken += 1
            yield chunk


class Collected:
    """An object writer that keeps what it is given."""

    def __init__(self) -> None:
        self.data = bytearray()

    async def write(self, chunk: bytes) -> None:
        self.data += chunk

    async def commit(self) -> None:
        pass

    async def abort(self) -> None:
        pass


def check_of(filename: str, max_bytes: int = 10 * MIB) -> StreamCheck:
    return StreamCheck(filename, max_bytes=max_bytes, allowed_extensions=ALLOWED)


async def test_checked_bytes_reach_the_writer_and_describe_the_file() -> None:
    content = pdf_bytes(["Invoice 42"], padding_bytes=300_000)
    check, writer = check_of("scans/invoice 42.pdf"), Collected()

    await check.pump(Source(content).chunks(), writer)
    checked = check.finish()

    assert bytes(writer.data) == content
    assert checked.filename == "invoice 42.pdf"
    assert checked.content_type == PDF
    assert checked.size == len(content)
    assert checked.sha256 == hashlib.sha256(content).hexdigest()


async def test_a_file_fed_over_several_requests_is_checked_as_one() -> None:
    content = pdf_bytes(["Invoice 42"], padding_bytes=200_000)
    check = check_of("invoice.pdf")

    for start in range(0, len(content), 70_000):  # as the PATCH requests of a resumable upload
        await check.pump(Source(content[start : start + 70_000]).chunks(), None)

    assert check.size == len(content)
    assert check.finish().sha256 == hashlib.sha256(content).hexdigest()


async def test_a_wrong_type_is_refused_at_its_first_bytes() -> None:
    source, writer = Source(png_bytes(600, 600), chunk_size=16), Collected()

    with pytest.raises(UnsupportedFileType, match=r"does not match its '\.pdf' extension"):
        await check_of("photo.pdf").pump(source.chunks(), writer)

    assert source.taken == 1
    assert writer.data == b""


def test_an_extension_not_accepted_is_refused_before_any_byte() -> None:
    with pytest.raises(UnsupportedFileType, match=r"'\.exe' files are not accepted"):
        check_of("setup.exe")


async def test_a_file_over_the_limit_is_refused_and_not_written_past_it() -> None:
    content = pdf_bytes(["big"], padding_bytes=200_000)
    writer = Collected()

    with pytest.raises(FileTooLarge):
        await check_of("big.pdf", max_bytes=100_000).pump(Source(content).chunks(), writer)

    assert len(writer.data) <= 100_000


async def test_an_empty_file_is_refused_when_finished() -> None:
    check = check_of("empty.pdf")
    await check.pump(Source(b"").chunks(), None)

    with pytest.raises(EmptyFile):
        check.finish()


async def test_verifying_a_finished_object_computes_its_sha256(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    content = pdf_bytes(["Written by several requests"], padding_bytes=500_000)
    writer = await storage.open_writer("raw/finished.pdf", "application/octet-stream")
    await writer.write(content)
    await writer.commit()

    checked = await verify_stored(storage, "raw/finished.pdf", check_of("finished.pdf"))

    assert (checked.size, checked.content_type) == (len(content), PDF)
    assert checked.sha256 == hashlib.sha256(content).hexdigest()


async def test_verifying_an_object_that_is_not_its_type_refuses_it(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    writer = await storage.open_writer("raw/staged.pdf", "application/octet-stream")
    await writer.write(png_bytes())
    await writer.commit()

    with pytest.raises(UnsupportedFileType):
        await verify_stored(storage, "raw/staged.pdf", check_of("staged.pdf"))

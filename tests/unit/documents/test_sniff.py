"""Content sniffing: the bytes decide the type, and they must agree with the extension."""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from collections.abc import Iterable

import pytest

from upload_service.documents.sniff import DOCX, ContentSniffer, extension_of
from upload_service.errors import UnsupportedFileType

ALLOWED = [".pdf", ".png", ".jpg", ".jpeg", ".docx"]
PDF_BYTES = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n%%EOF\n"
PNG_BYTES = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(17)
JPEG_BYTES = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(100) + b"\xff\xd9"


class _Unseekable(io.RawIOBase):
    """A write-only stream, so that zipfile must use data descriptors, as streaming writers do."""

    def __init__(self) -> None:
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.data += b
        return len(b)


def make_zip(
    entries: Iterable[tuple[str, bytes]],
    *,
    data_descriptors: bool = False,
    compression: int = zipfile.ZIP_DEFLATED,
    comment: bytes = b"",
) -> bytes:
    target: io.BytesIO | _Unseekable = _Unseekable() if data_descriptors else io.BytesIO()
    with zipfile.ZipFile(target, "w", compression) as archive:
        archive.comment = comment
        for name, data in entries:
            archive.writestr(name, data)
    return bytes(target.data) if isinstance(target, _Unseekable) else target.getvalue()


DOCX_ENTRIES = [
    ("[Content_Types].xml", b'<?xml version="1.0"?><Types/>'),
    ("_rels/.rels", b"<Relationships/>"),
    ("word/document.xml", b"<w:document>" + b"<w:p>hello</w:p>" * 500 + b"</w:document>"),
    ("word/styles.xml", b"<w:styles/>"),
]


def sniff(extension: str, data: bytes, chunk_size: int = 65536) -> str:
    sniffer = ContentSniffer(extension, ALLOWED)
    for start in range(0, len(data), chunk_size):
        sniffer.feed(data[start : start + chunk_size])
    return sniffer.finish()


def assert_refused(extension: str, data: bytes, chunk_size: int = 65536) -> None:
    with pytest.raises(UnsupportedFileType) as caught:
        sniff(extension, data, chunk_size)
    assert caught.value.details == {"allowed": ALLOWED}


# Each type is recognised from its bytes.


@pytest.mark.parametrize(
    ("extension", "data", "mime"),
    [
        (".pdf", PDF_BYTES, "application/pdf"),
        (".png", PNG_BYTES, "image/png"),
        (".jpg", JPEG_BYTES, "image/jpeg"),
        (".jpeg", JPEG_BYTES, "image/jpeg"),
        (".docx", make_zip(DOCX_ENTRIES), DOCX),
        (".PDF", PDF_BYTES, "application/pdf"),
    ],
)
@pytest.mark.parametrize("chunk_size", [1, 5, 65536])
def test_each_type_is_detected_from_its_bytes(
    extension: str, data: bytes, mime: str, chunk_size: int
) -> None:
    assert sniff(extension, data, chunk_size) == mime


@pytest.mark.parametrize(
    ("extension", "data"),
    [
        (".png", PDF_BYTES),
        (".pdf", PNG_BYTES),
        (".jpg", PNG_BYTES),
        (".pdf", b"%PDF"),
        (".pdf", b" %PDF-1.7"),
        (".png", PNG_BYTES[:7]),
        (".jpeg", b"\xff\xd8\x00"),
        (".docx", PDF_BYTES),
        (".pdf", make_zip(DOCX_ENTRIES)),
        (".pdf", b""),
    ],
)
def test_content_that_does_not_match_the_extension_is_refused(extension: str, data: bytes) -> None:
    assert_refused(extension, data)


@pytest.mark.parametrize("extension", [".exe", ".txt", "", ".pdf.exe"])
def test_an_extension_outside_the_known_types_is_refused_at_once(extension: str) -> None:
    with pytest.raises(UnsupportedFileType) as caught:
        ContentSniffer(extension, ALLOWED)
    assert caught.value.details == {"allowed": ALLOWED}


def test_an_extension_not_in_the_allowed_list_is_refused_at_once() -> None:
    with pytest.raises(UnsupportedFileType, match=r"'\.docx' files are not accepted"):
        ContentSniffer(".docx", [".pdf"])


def test_jpeg_and_jpg_are_allowed_separately() -> None:
    ContentSniffer(".jpg", [".jpg"])
    with pytest.raises(UnsupportedFileType):
        ContentSniffer(".jpeg", [".jpg"])


# A wrong type is refused from the first bytes, long before the end of a large upload.


def test_check_prefix_refuses_a_mismatch_after_the_first_chunk() -> None:
    sniffer = ContentSniffer(".png", ALLOWED)
    sniffer.feed(PDF_BYTES[:3])
    with pytest.raises(UnsupportedFileType):
        sniffer.check_prefix()


def test_check_prefix_waits_while_the_prefix_is_still_consistent() -> None:
    sniffer = ContentSniffer(".pdf", ALLOWED)
    sniffer.check_prefix()
    sniffer.feed(b"%P")
    sniffer.check_prefix()
    sniffer.feed(b"DF-1.4 rest")
    sniffer.check_prefix()
    assert sniffer.finish() == "application/pdf"


@pytest.mark.parametrize("extension", [".pdf", ".png", ".jpg", ".docx"])
def test_check_prefix_accepts_the_head_of_the_file_before_it_is_fed(extension: str) -> None:
    sniffer = ContentSniffer(extension, ALLOWED)
    with pytest.raises(UnsupportedFileType):
        sniffer.check_prefix(b"MZ\x90\x00 an executable")
    good = {".pdf": PDF_BYTES, ".png": PNG_BYTES, ".jpg": JPEG_BYTES}.get(extension, b"PK\x03\x04")
    sniffer.check_prefix(good[:2])
    sniffer.check_prefix(good)


# DOCX: a ZIP holding [Content_Types].xml and word/document.xml, never inflated.


def test_a_plain_zip_without_word_document_is_not_a_docx() -> None:
    assert_refused(".docx", make_zip([("[Content_Types].xml", b"<Types/>"), ("a.txt", b"x")]))


def test_a_zip_without_content_types_is_not_a_docx() -> None:
    assert_refused(".docx", make_zip([("word/document.xml", b"<w:document/>")]))


@pytest.mark.parametrize("chunk_size", [1, 7, 65536])
def test_a_docx_whose_entries_use_data_descriptors_is_recognised(chunk_size: int) -> None:
    data = make_zip(DOCX_ENTRIES, data_descriptors=True)
    assert struct.unpack_from("<H", data, 6)[0] & 0x08  # the flag the writer set
    assert sniff(".docx", data, chunk_size) == DOCX


@pytest.mark.parametrize("data_descriptors", [False, True])
def test_a_docx_with_content_types_last_is_recognised(data_descriptors: bool) -> None:
    entries = [*DOCX_ENTRIES[1:], DOCX_ENTRIES[0]]
    assert sniff(".docx", make_zip(entries, data_descriptors=data_descriptors)) == DOCX


def test_a_stored_docx_with_an_archive_comment_is_recognised() -> None:
    data = make_zip(DOCX_ENTRIES, compression=zipfile.ZIP_STORED, comment=b"made by a test")
    assert sniff(".docx", data, 1000) == DOCX


def test_entry_names_that_only_appear_inside_file_data_do_not_count() -> None:
    fake = b"PK\x03\x04 word/document.xml [Content_Types].xml"
    data = make_zip([("[Content_Types].xml", b"<Types/>"), ("notes.txt", fake)], compression=0)
    assert_refused(".docx", data)


def test_a_truncated_docx_is_refused() -> None:
    data = make_zip(DOCX_ENTRIES)
    assert_refused(".docx", data[: len(data) - 30])


def test_a_docx_with_zip64_end_records_is_recognised() -> None:
    assert sniff(".docx", with_zip64_end_records(make_zip(DOCX_ENTRIES))) == DOCX


def many_entries(count: int) -> list[tuple[str, bytes]]:
    return [(f"word/media/image-with-a-rather-long-name-{i:05}.png", b"") for i in range(count)]


def test_a_docx_whose_central_directory_exceeds_the_tail_is_judged_by_local_headers() -> None:
    data = make_zip([*many_entries(4000), *DOCX_ENTRIES])
    assert sniff(".docx", data) == DOCX
    assert_refused(".docx", make_zip([*many_entries(4000), *DOCX_ENTRIES[:2]]))


def test_zip64_local_headers_are_walked_by_their_extra_field() -> None:
    target = io.BytesIO()
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in [*many_entries(4000), *DOCX_ENTRIES]:
            with archive.open(name, "w", force_zip64=True) as entry:
                entry.write(data)
    data = target.getvalue()
    assert struct.unpack_from("<I", data, 18)[0] == 0xFFFFFFFF  # sizes live in the ZIP64 extra
    assert sniff(".docx", data) == DOCX


def test_a_huge_central_directory_with_data_descriptors_cannot_be_verified() -> None:
    # Neither the tail nor the local walk can see the names: refused rather than guessed.
    assert_refused(".docx", make_zip([*many_entries(4000), *DOCX_ENTRIES], data_descriptors=True))


def test_docx_sniffing_memory_stays_bounded_for_a_large_file() -> None:
    data = make_zip([*DOCX_ENTRIES, ("word/media/big.bin", bytes(24 * 1024 * 1024))], compression=0)
    view = memoryview(data)
    sniffer = ContentSniffer(".docx", ALLOWED)
    tracemalloc.start()
    try:
        for start in range(0, len(data), 65536):
            sniffer.feed(bytes(view[start : start + 65536]))  # a fresh chunk, as from the network
        assert sniffer.finish() == DOCX
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024


def with_zip64_end_records(data: bytes) -> bytes:
    """Rewrite a small ZIP's end as a ZIP64 writer does: ZIP64 record, locator, saturated EOCD."""
    eocd = data.rfind(b"PK\x05\x06")
    _sig, _d, _cd, _de, entries, cd_size, cd_offset, _c = struct.unpack_from("<4s4H2IH", data, eocd)
    record_offset = eocd
    record = struct.pack(
        "<4sQ2H2I4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, cd_size, cd_offset
    )
    locator = struct.pack("<4sIQI", b"PK\x06\x07", 0, record_offset, 1)
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    rewritten = data[:eocd] + record + locator + end
    with zipfile.ZipFile(io.BytesIO(rewritten)) as archive:  # still a ZIP to a real reader
        assert "word/document.xml" in archive.namelist()
    return rewritten


# The extension the sniffer is given.


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("Invoice.PDF", ".pdf"),
        ("photo.jpeg", ".jpeg"),
        ("photo.JPG", ".jpg"),
        ("archive.tar.gz", ".gz"),
        ("README", ""),
        (".pdf", ".pdf"),
        ("../../scan.png", ".png"),
        ("C:\\docs\\letter.docx", ".docx"),
        ("report.pdf. ", ".pdf"),
        ("my notes.final version", ""),
        ("", ""),
    ],
)
def test_extension_of(filename: str, extension: str) -> None:
    assert extension_of(filename) == extension

"""The parts a multipart direct upload is cut into, and a stored file judged by its ends."""

from __future__ import annotations

import pytest

from tests import samples
from upload_service.db.models import DirectUpload
from upload_service.documents.doors.direct.declare import part_length, plan_parts
from upload_service.documents.sniff import DOCX, PDF, TAIL_BYTES, ContentSniffer
from upload_service.errors import UnsupportedFileType

MIB = 1024 * 1024
ALLOWED = [".pdf", ".png", ".jpg", ".jpeg", ".docx"]


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (17 * MIB, (8 * MIB, 3)),
        (256 * MIB, (8 * MIB, 32)),
        (8 * MIB * 10_000, (8 * MIB, 10_000)),
        (8 * MIB * 10_000 + 1, (9 * MIB, 8889)),
    ],
)
def test_parts_are_8_mib_unless_10000_would_not_hold_the_file(
    size: int, expected: tuple[int, int]
) -> None:
    assert plan_parts(size) == expected


def test_every_part_is_part_size_but_the_last() -> None:
    upload = DirectUpload(size_bytes=17 * MIB + 5, part_size=8 * MIB, part_count=3)
    assert [part_length(upload, n) for n in (1, 2, 3)] == [8 * MIB, 8 * MIB, MIB + 5]


def test_ends_tell_a_pdf_and_refuse_a_png_named_pdf() -> None:
    pdf = samples.pdf_bytes(["x"])
    assert ContentSniffer(".pdf", ALLOWED).judge_ends(pdf[:8192], b"") == PDF
    with pytest.raises(UnsupportedFileType):
        ContentSniffer(".pdf", ALLOWED).judge_ends(samples.png_bytes(), b"")


def test_a_docx_is_told_by_its_central_directory_in_the_tail() -> None:
    docx = samples.docx_bytes(["Dear Sir"])
    sniffer = ContentSniffer(".docx", ALLOWED)
    assert sniffer.reads_tail
    assert sniffer.judge_ends(docx[:8192], docx[-TAIL_BYTES:]) == DOCX
    # A ZIP that is not a Word document (no word/document.xml) is refused.
    with pytest.raises(UnsupportedFileType):
        ContentSniffer(".docx", ALLOWED).judge_ends(b"PK\x03\x04", b"PK\x05\x06" + b"\0" * 18)

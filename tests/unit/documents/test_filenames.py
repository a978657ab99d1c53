"""Filenames: a client's name becomes a safe base name, and goes back out in an RFC 6266 header."""

from __future__ import annotations

import random
import unicodedata
from urllib.parse import unquote

import pytest

from upload_service.documents.filenames import content_disposition, safe_filename


@pytest.mark.parametrize(
    ("raw", "safe"),
    [
        ("invoice_2024_01.pdf", "invoice_2024_01.pdf"),
        ("../../etc/passwd", "passwd"),
        ("/etc/passwd", "passwd"),
        ("C:\\x\\y.pdf", "y.pdf"),
        ("..\\..\\windows\\system.ini", "system.ini"),
        ("dir/sub\\mixed/name.png", "name.png"),
        ("in\x00voice\x1f\x7f.pdf", "invoice.pdf"),
        ("line\r\nbreak.pdf", "linebreak.pdf"),
        ("tab\there.pdf", "tabhere.pdf"),
        ("c1\x85control.pdf", "c1control.pdf"),
        ("cod\u202efdp.exe", "codfdp.exe"),
        ("  spaced name.pdf  ", "spaced name.pdf"),
        (".hidden.pdf", "hidden.pdf"),
        ("...dots.pdf", "dots.pdf"),
        (". .pdf", "upload.pdf"),
        (".pdf", "upload.pdf"),
        ("report.pdf. ", "report.pdf"),
        ("e\u0301te\u0301.pdf", "\u00e9t\u00e9.pdf"),
        ("lone\udcffsurrogate.pdf", "lonesurrogate.pdf"),
        ("Ünïcödé 文件.docx", "Ünïcödé 文件.docx"),
        ("a." + "x" * 40, "a." + "x" * 40),
    ],
)
def test_safe_filename(raw: str, safe: str) -> None:
    assert safe_filename(raw) == safe


@pytest.mark.parametrize("raw", ["", "   ", "/", "a/", "..", "...", "\x00\x01", "\u202e", "C:\\"])
def test_nothing_left_falls_back_to_a_fixed_name(raw: str) -> None:
    assert safe_filename(raw) == "upload"


@pytest.mark.parametrize("letter", ["é", "文", "😀", "a"])
def test_long_names_are_cut_to_255_bytes_keeping_the_extension(letter: str) -> None:
    raw = letter * (300 // len(letter.encode())) + ".pdf"
    assert len(raw.encode()) > 255
    safe = safe_filename(raw)
    assert safe.endswith(".pdf")
    assert 255 - len(letter.encode()) < len(safe.encode()) <= 255
    assert raw.startswith(safe[: -len(".pdf")])  # cut on a character, never inside one


def test_a_long_name_whose_cut_ends_in_a_dot_does_not_double_it() -> None:
    safe = safe_filename("a" * 250 + "." + "b" * 100 + ".pdf")
    assert safe == "a" * 250 + ".pdf"


def test_safe_filename_is_idempotent_and_always_valid() -> None:
    rng = random.Random(7)
    alphabet = "ab.é文😀/\\\x00\x1f\u202e \t-_" + "\u0301"
    for _ in range(2000):
        raw = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 300)))
        safe = safe_filename(raw)
        assert safe == safe_filename(safe)
        assert safe
        assert len(safe.encode("utf-8")) <= 255
        assert not any(c in safe for c in "/\\\x00\x1f\u202e\t")
        assert not safe.startswith((".", " "))
        assert not safe.endswith((".", " "))
        assert unicodedata.is_normalized("NFC", safe)


@pytest.mark.parametrize(
    ("filename", "header"),
    [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            'say "hi" \\ bye.pdf',
            'attachment; filename="say \\"hi\\" \\\\ bye.pdf"; '
            "filename*=UTF-8''say%20%22hi%22%20%5C%20bye.pdf",
        ),
        (
            "résumé 2024.pdf",
            'attachment; filename="resume 2024.pdf"; '
            "filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf",
        ),
        ("文件.docx", "attachment; filename=\"__.docx\"; filename*=UTF-8''%E6%96%87%E4%BB%B6.docx"),
        ("100%.pdf", "attachment; filename=\"100_.pdf\"; filename*=UTF-8''100%25.pdf"),
        ("a;b,c.pdf", "attachment; filename=\"a;b,c.pdf\"; filename*=UTF-8''a%3Bb%2Cc.pdf"),
    ],
)
def test_content_disposition(filename: str, header: str) -> None:
    assert content_disposition(filename) == header


def test_content_disposition_cannot_break_the_header() -> None:
    header = content_disposition("x\r\nSet-Cookie: a=b\x00.pdf")
    assert not any(c in header for c in "\r\n\x00")
    assert header.isascii()


@pytest.mark.parametrize(
    "filename", ["plain.pdf", "Ünïcödé 文件 😀.docx", "a'b\"c.png", "~!#$&+^`|.jpg"]
)
def test_filename_star_round_trips(filename: str) -> None:
    encoded = content_disposition(filename).split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded, encoding="utf-8", errors="strict") == filename
    assert all(c.isalnum() or c in "!#$&+-.^_`|~%" for c in encoded)  # RFC 5987 attr-char

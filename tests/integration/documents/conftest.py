"""Helpers for the document tests: real file bytes and hand-built multipart bodies."""

from __future__ import annotations

import io

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests import samples
from upload_service.db.models import Document, Job

BOUNDARY = "test-boundary-7MA4YWxkTrZu0gW"


def pdf_bytes(text: str = "Invoice number 42 total due", pad: int = 0) -> bytes:
    """A small, valid PDF with one line of text, made `pad` bytes larger on request."""
    return samples.pdf_bytes([text], padding_bytes=pad)


PNG = samples.png_bytes()
JPEG = samples.jpeg_bytes()


def docx_bytes(text: str = "Dear Sir, this letter ...") -> bytes:
    """A DOCX (a ZIP with [Content_Types].xml and word/document.xml) holding `text`."""
    return samples.docx_bytes([text])


def multipart(
    *parts: tuple[str, str | None, bytes], boundary: str = BOUNDARY, close: bool = True
) -> bytes:
    """A multipart/form-data body from (field name, filename or None, content) parts."""
    out = io.BytesIO()
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        out.write(f"--{boundary}\r\nContent-Disposition: {disposition}\r\n".encode())
        if filename is not None:
            out.write(b"Content-Type: application/octet-stream\r\n")
        out.write(b"\r\n" + content + b"\r\n")
    if close:
        out.write(f"--{boundary}--\r\n".encode())
    return out.getvalue()


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


async def count_rows(engine: AsyncEngine, model: type[Document] | type[Job]) -> int:
    """Rows in a table, read directly."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


@pytest.fixture
def sample_pdf() -> bytes:
    return pdf_bytes()

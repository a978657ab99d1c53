"""Small, real sample documents built in code (PDF, DOCX, PNG, JPEG) and the label each deserves.

Every format is written by hand from its specification (no third-party writer), so the bytes are
the same on every run: a one-font PDF with a text content stream per page, a DOCX with the parts
Word needs, a greyscale PNG and a baseline JPEG.
"""

from __future__ import annotations

import hashlib
import io
import struct
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape

PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PNG = "image/png"
JPEG = "image/jpeg"

# Two texts per label, one long and formal, one short, so the tests do not hinge on one wording.
TEXTS: dict[str, tuple[tuple[str, ...], ...]] = {
    "invoice": (
        (
            "ACME Supplies Ltd - INVOICE",
            "Invoice number: INV-2026-0042    Invoice date: 15 January 2026",
            "Bill to: Northwind Traders, 12 Harbour Road, Leeds",
            "Consulting services, 10 hours at 120.00          1,200.00",
            "VAT 20%                                            240.00",
            "Amount due: 1,440.00 EUR    Due date: 14 February 2026",
            "Payment terms: net 30. Please remit to IBAN DE89 3704 0044 0532 0130 00.",
        ),
        (
            "Invoice 7781",
            "Balance due 310.50 by the due date below.",
            "Purchase order PO-5512. Tax ID GB123456789.",
        ),
    ),
    "receipt": (
        (
            "CORNER GROCERY - SALES RECEIPT",
            "Store #0113   Cashier: Maria   Transaction 889102",
            "Milk 1.29   Bread 2.49   Apples 3.10",
            "Total paid 6.88   Cash tendered 10.00   Change due 3.12",
            "Thank you for your purchase! Keep this receipt for a refund.",
        ),
        (
            "Receipt",
            "Paid by card ending 4421. Total paid 42.00.",
            "Thank you for shopping with us.",
        ),
    ),
    "contract": (
        (
            "SERVICE AGREEMENT",
            "This Agreement is made between Acme Ltd (hereinafter the Provider) and Beta GmbH"
            " (hereinafter the Client), together the Parties.",
            "WHEREAS the Client wishes to engage the Provider, the Parties agree as follows.",
            "1. The Provider shall deliver the services from the Effective Date.",
            "2. Termination: either party may terminate this contract with 30 days notice.",
            "3. Governing law: this Agreement is governed by the laws of England.",
            "IN WITNESS WHEREOF the Parties have signed this Agreement.",
        ),
        (
            "Non-disclosure contract",
            "The parties shall keep all information confidential; obligations of"
            " confidentiality survive termination of this agreement.",
        ),
    ),
    "resume": (
        (
            "Jane Doe - Curriculum Vitae",
            "Objective: a senior backend engineering role.",
            "Work experience: Software Engineer, Initech, 2019-2025. Built payment systems.",
            "Education: Bachelor of Science in Computer Science, University of Leeds.",
            "Skills: Python, PostgreSQL, gRPC, Kubernetes.",
            "Certifications: AWS Solutions Architect. References available on request.",
        ),
        (
            "RESUME - John Smith",
            "Professional experience: data analyst at Globex, 2021-2025.",
            "Education: Master of Statistics. Skills: SQL, R. linkedin.com/in/jsmith",
        ),
    ),
    "letter": (
        (
            "12 March 2026",
            "Dear Ms Patel,",
            "I am writing to thank you for your hospitality during our visit last week.",
            "Enclosed you will find the photographs we promised. We look forward to seeing"
            " you again in the spring.",
            "Yours sincerely,",
            "Robert Brown",
        ),
        (
            "To whom it may concern,",
            "Please accept this note as confirmation of my new address.",
            "Kind regards, Anna",
        ),
    ),
}

OTHER_TEXT = (
    "The quick brown fox jumps over the lazy dog.",
    "Autumn leaves drift across the quiet river while the herons wait.",
    "Chapter one: the lighthouse keeper counted the ships each evening.",
)


@dataclass(frozen=True)
class SampleDocument:
    """A generated document, its metadata, and the label a good classifier gives it."""

    filename: str
    content_type: str
    content: bytes
    expected_label: str

    @property
    def sha256(self) -> str:
        """Hex SHA-256 of the content."""
        return hashlib.sha256(self.content).hexdigest()


def sample_documents() -> list[SampleDocument]:
    """A PDF and a DOCX of every text of every label, a PNG, a JPEG, and `other` texts."""
    documents = []
    for label, texts in TEXTS.items():
        for number, lines in enumerate(texts, start=1):
            documents.append(SampleDocument(f"{label}-{number}.pdf", PDF, pdf_bytes(lines), label))
            documents.append(
                SampleDocument(f"{label}-{number}.docx", DOCX, docx_bytes(lines), label)
            )
    documents.append(SampleDocument("photo.png", PNG, png_bytes(), "image"))
    documents.append(SampleDocument("photo.jpg", JPEG, jpeg_bytes(), "image"))
    documents.append(SampleDocument("story.pdf", PDF, pdf_bytes(OTHER_TEXT), "other"))
    documents.append(SampleDocument("story.docx", DOCX, docx_bytes(OTHER_TEXT), "other"))
    return documents


def pdf_bytes(
    lines: Sequence[str], *, pages: Sequence[Sequence[str]] = (), padding_bytes: int = 0
) -> bytes:
    """A PDF with `lines` on page one (then `pages`), plus an unused stream of `padding_bytes`."""
    page_texts = [lines, *pages]
    first_page = 4
    font = first_page + 2 * len(page_texts)
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids ["
        + b" ".join(f"{first_page + 2 * i} 0 R".encode() for i in range(len(page_texts)))
        + f"] /Count {len(page_texts)} >>".encode(),
        _pdf_stream(b"\0" * padding_bytes),  # object 3: never referenced, only makes the file big
    ]
    for index, text in enumerate(page_texts):
        contents = first_page + 2 * index + 1
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {contents} 0 R"
            f" /Resources << /Font << /F1 {font} 0 R >> >> >>"
        )
        objects.append(page.encode())
        operations = ["BT", "/F1 11 Tf", "14 TL", "56 740 Td"]
        operations += [f"({_pdf_string(line)}) Tj T*" for line in text]
        operations.append("ET")
        objects.append(_pdf_stream("\n".join(operations).encode("latin-1")))
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")

    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.writelines(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out.write(
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    )
    return out.getvalue()


def _pdf_stream(data: bytes) -> bytes:
    return f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


_CONTENT_TYPES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
    '<Default Extension="rels"'
    ' ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
    '<Default Extension="xml" ContentType="application/xml"/>'
    '<Override PartName="/word/document.xml" ContentType="application/'
    'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
    "</Types>"
)
_RELS = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
    '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
    '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
    'relationships/officeDocument" Target="word/document.xml"/>'
    "</Relationships>"
)
W_NAMESPACE = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def docx_bytes(paragraphs: Sequence[str]) -> bytes:
    """A minimal Word document with one paragraph per item."""
    body = "".join(
        f'<w:p><w:r><w:t xml:space="preserve">{escape(text)}</w:t></w:r></w:p>'
        for text in paragraphs
    )
    document = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f'<w:document xmlns:w="{W_NAMESPACE}"><w:body>{body}</w:body></w:document>'
    )
    return docx_from_parts(document.encode())


def docx_from_parts(document_xml: bytes) -> bytes:
    """A DOCX package around a given `word/document.xml`."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in (
            ("[Content_Types].xml", _CONTENT_TYPES.encode()),
            ("_rels/.rels", _RELS.encode()),
            ("word/document.xml", document_xml),
        ):
            # A fixed timestamp keeps the bytes (and so the digest) the same on every run.
            archive.writestr(
                zipfile.ZipInfo(name, (2026, 1, 1, 0, 0, 0)), data, zipfile.ZIP_DEFLATED
            )
    return out.getvalue()


def png_bytes(width: int = 8, height: int = 8) -> bytes:
    """A greyscale PNG with a gradient."""
    rows = b"".join(b"\0" + bytes((x * 32 + y) % 256 for x in range(width)) for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def jpeg_bytes() -> bytes:
    """A baseline 8x8 greyscale JPEG (one block, mid grey): the smallest complete JPEG file."""
    quantisation = b"\xff\xdb" + struct.pack(">H", 67) + b"\x00" + b"\x01" * 64
    frame = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 8, 8, 1) + b"\x01\x11\x00"
    # One-code Huffman tables: DC category 0 and AC end-of-block, each coded as the bit "0".
    dc_table = b"\xff\xc4" + struct.pack(">H", 20) + b"\x00" + b"\x01" + b"\x00" * 15 + b"\x00"
    ac_table = b"\xff\xc4" + struct.pack(">H", 20) + b"\x10" + b"\x01" + b"\x00" * 15 + b"\x00"
    scan = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + b"\x00\x3f\x00"
    # Bits "0" (DC diff 0) and "0" (end of block), padded with ones.
    entropy = b"\x3f"
    return b"\xff\xd8" + quantisation + frame + dc_table + ac_table + scan + entropy + b"\xff\xd9"

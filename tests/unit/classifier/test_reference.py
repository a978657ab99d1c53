"""The reference classifier: right labels from real documents, honest confidence, bounded work."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import zipfile
from collections.abc import AsyncIterator

import pytest

from tests.samples import (
    DOCX,
    OTHER_TEXT,
    PDF,
    TEXTS,
    W_NAMESPACE,
    SampleDocument,
    docx_bytes,
    docx_from_parts,
    pdf_bytes,
    sample_documents,
)
from upload_service.classifier import LABELS, DocumentToClassify
from upload_service.classifier.reference import (
    MAX_DOCX_XML_BYTES,
    MAX_PDF_PAGES,
    MODEL_VERSION,
    InProcessClassifier,
    classify_text,
    docx_text,
)
from upload_service.errors import ClassifierFailed, ClassifierRejected


def describe(content: bytes, content_type: str = PDF, name: str = "doc") -> DocumentToClassify:
    return DocumentToClassify(
        doc_id=f"doc_{name}",
        filename=name,
        content_type=content_type,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
    )


async def chunks_of(content: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


@pytest.fixture(scope="module")
def classifier() -> InProcessClassifier:
    return InProcessClassifier()


@pytest.mark.parametrize("sample", sample_documents(), ids=lambda sample: sample.filename)
async def test_each_sample_gets_its_label(
    classifier: InProcessClassifier, sample: SampleDocument
) -> None:
    doc = describe(sample.content, sample.content_type, sample.filename)

    result = await classifier.classify(doc, sample.content)

    assert result.label == sample.expected_label
    assert result.model_version == MODEL_VERSION
    assert set(result.scores) == set(LABELS)
    assert result.confidence == result.scores[result.label] == max(result.scores.values())
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=1e-3)


async def test_streamed_content_classifies_like_whole_content(
    classifier: InProcessClassifier,
) -> None:
    content = docx_bytes(TEXTS["contract"][0])
    doc = describe(content, DOCX)

    whole = await classifier.classify(doc, content)
    streamed = await classifier.classify(doc, chunks_of(content, 333))

    assert streamed == whole


async def test_large_streamed_pdf_spills_to_disk_and_classifies(
    classifier: InProcessClassifier,
) -> None:
    content = pdf_bytes(TEXTS["invoice"][0], padding_bytes=20 * 1024 * 1024)

    result = await classifier.classify(describe(content), chunks_of(content, 1024 * 1024))

    assert result.label == "invoice"


async def test_pdf_reads_only_its_leading_pages(classifier: InProcessClassifier) -> None:
    leading = [OTHER_TEXT] * (MAX_PDF_PAGES - 1)
    content = pdf_bytes(OTHER_TEXT, pages=[*leading, *TEXTS["invoice"]])

    result = await classifier.classify(describe(content), content)

    assert result.label == "other"


async def test_long_pdf_is_classified_from_its_first_page(classifier: InProcessClassifier) -> None:
    content = pdf_bytes(TEXTS["resume"][0], pages=[OTHER_TEXT] * 40)

    result = await classifier.classify(describe(content), content)

    assert result.label == "resume"


def test_strong_evidence_is_more_confident_than_weak() -> None:
    strong = classify_text("\n".join(TEXTS["invoice"][0]))
    weak = classify_text("Invoice attached.")
    mixed = classify_text("Invoice. This agreement between the parties.")

    assert strong.label == weak.label == "invoice"
    assert strong.confidence > weak.confidence
    assert mixed.confidence < strong.confidence


def test_text_without_evidence_is_other() -> None:
    result = classify_text("\n".join(OTHER_TEXT))

    assert result.label == "other"


def test_no_text_is_other_with_low_confidence() -> None:
    result = classify_text("   ")

    assert result.label == "other"
    assert result.confidence <= 0.5


async def test_unreadable_bytes_are_other(classifier: InProcessClassifier) -> None:
    for content in (b"%PDF-1.7 truncated garbage", b"PK\x03\x04 not a zip", b"plain bytes"):
        result = await classifier.classify(describe(content), content)
        assert result.label == "other"


def test_docx_zip_bomb_reads_a_bounded_prefix() -> None:
    head = "".join(f"<w:p><w:r><w:t>{line}</w:t></w:r></w:p>" for line in TEXTS["invoice"][0])
    tail = "<w:p><w:r><w:t>curriculum vitae work experience</w:t></w:r></w:p>"
    padding = b" " * (1024 * 1024)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as xml:
            xml.write(f'<w:document xmlns:w="{W_NAMESPACE}"><w:body>{head}'.encode())
            # 32 times the bound of whitespace: ~256 MiB inflated from ~250 KiB.
            for _ in range(32 * MAX_DOCX_XML_BYTES // len(padding)):
                xml.write(padding)
            xml.write(f"{tail}</w:body></w:document>".encode())
    assert len(out.getvalue()) < 2 * 1024 * 1024

    started = time.monotonic()
    text = docx_text(io.BytesIO(out.getvalue()))

    assert time.monotonic() - started < 5
    assert "Amount due" in text
    assert "curriculum" not in text
    assert classify_text(text).label == "invoice"


def test_docx_entity_expansion_is_refused() -> None:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    document = (
        f'<?xml version="1.0"?><!DOCTYPE w:document [{entities}]>'
        f'<w:document xmlns:w="{W_NAMESPACE}"><w:body><w:p><w:r><w:t>&a9;</w:t></w:r></w:p>'
        "</w:body></w:document>"
    ).encode()

    started = time.monotonic()
    text = docx_text(io.BytesIO(docx_from_parts(document)))

    assert time.monotonic() - started < 5
    assert len(text) < 1_000_000


async def test_content_not_matching_its_sha256_is_rejected(
    classifier: InProcessClassifier,
) -> None:
    content = pdf_bytes(TEXTS["letter"][0])
    doc = DocumentToClassify("doc_x", "x.pdf", PDF, len(content), "0" * 64)

    with pytest.raises(ClassifierRejected, match="sha256"):
        await classifier.classify(doc, content)


@pytest.mark.parametrize("declared_delta", [-1, 1], ids=["longer", "shorter"])
async def test_content_not_matching_its_declared_size_is_rejected(
    classifier: InProcessClassifier, declared_delta: int
) -> None:
    content = pdf_bytes(TEXTS["letter"][0])
    doc = DocumentToClassify("doc_x", "x.pdf", PDF, len(content) + declared_delta, "")

    with pytest.raises(ClassifierRejected):
        await classifier.classify(doc, chunks_of(content, 100))


async def test_document_over_the_limit_is_rejected_before_reading() -> None:
    classifier = InProcessClassifier(max_content_bytes=1000)
    doc = DocumentToClassify("doc_x", "x.pdf", PDF, 1001, "")

    async def never_read() -> AsyncIterator[bytes]:
        raise AssertionError("content was read")
        yield b""  # pragma: no cover

    with pytest.raises(ClassifierRejected, match="larger"):
        await classifier.classify(doc, never_read())


async def test_in_process_classifier_is_always_healthy(classifier: InProcessClassifier) -> None:
    await classifier.check()
    await classifier.aclose()


async def test_a_classification_past_its_time_fails_instead_of_hanging() -> None:
    content = sample_documents()[0].content

    async def stalls() -> AsyncIterator[bytes]:
        yield content[:10]
        await asyncio.sleep(60)
        yield content[10:]

    started = time.monotonic()
    with pytest.raises(ClassifierFailed, match=r"did not finish within 0\.2 s"):
        await InProcessClassifier(timeout_s=0.2).classify(describe(content), stalls())
    assert time.monotonic() - started < 5

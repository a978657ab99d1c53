"""The reference classifier: labels a document from its text by weighted keyword evidence.

Text comes from the first pages of a PDF (pypdf) or from a DOCX's `word/document.xml`; PNG,
JPEG and GIF files are labelled `image` from their magic bytes. Every read is bounded (pages,
decompressed XML bytes, characters of text), so a 50 MB or zip-bomb document costs little.

Content arrives as a stream and is spooled (memory up to a bound, then a temporary file),
because both formats keep their index at the end of the file: a ZIP's central directory, a PDF's
cross-reference table. The spool checks the stream against the declared size and SHA-256.

Confidence is the label's share of the evidence: each label's keyword score divided by the sum of
all scores plus a fixed prior for `other`. Few or mixed keywords give a low confidence; no keyword
at all gives `other`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import tempfile
import zipfile
from collections.abc import Mapping
from functools import partial
from typing import IO, Final
from xml.etree import ElementTree

from pypdf import PdfReader

from upload_service.classifier.base import (
    LABELS,
    Classification,
    Content,
    DocumentToClassify,
    iter_content,
)
from upload_service.errors import ClassifierFailed, ClassifierRejected

logger = logging.getLogger(__name__)

MODEL_VERSION: Final = "reference-keywords-1"
DEFAULT_MAX_CONTENT_BYTES: Final = 64 * 1024 * 1024
DEFAULT_TIMEOUT_S: Final = 10.0
MAX_PDF_PAGES: Final = 8
MAX_DOCX_XML_BYTES: Final = 8 * 1024 * 1024
MAX_TEXT_CHARS: Final = 100_000
SPOOL_MEMORY_BYTES: Final = 8 * 1024 * 1024

# The pseudo-score of `other`: evidence below it is not enough to name a label.
OTHER_PRIOR: Final = 2.5
# Repeating a keyword adds evidence, but only so much.
MAX_HITS_PER_KEYWORD: Final = 3
IMAGE_CONFIDENCE: Final = 0.95
UNREADABLE_CONFIDENCE: Final = 0.5

_KEYWORDS: Final[Mapping[str, tuple[tuple[str, float], ...]]] = {
    "invoice": (
        ("invoice", 3), ("invoice number", 2), ("invoice date", 2), ("bill to", 2),
        ("amount due", 3), ("balance due", 3), ("due date", 2), ("payment terms", 2),
        ("net 30", 2), ("remit to", 2), ("purchase order", 1), ("vat", 1), ("tax id", 1),
    ),
    "receipt": (
        ("receipt", 3), ("cashier", 2), ("change due", 3), ("tendered", 2), ("total paid", 2),
        ("thank you for your purchase", 3), ("thank you for shopping", 3), ("paid", 1),
        ("cash", 1), ("card ending", 2), ("transaction", 1), ("store", 1), ("refund", 1),
    ),
    "contract": (
        ("agreement", 3), ("contract", 3), ("whereas", 3), ("hereinafter", 3), ("parties", 2),
        ("governing law", 3), ("in witness whereof", 3), ("termination", 2), ("shall", 1),
        ("effective date", 2), ("indemnify", 2), ("confidentiality", 1), ("obligations", 1),
    ),
    "resume": (
        ("resume", 3), ("résumé", 3), ("curriculum vitae", 3), ("work experience", 3),
        ("professional experience", 3), ("employment history", 3), ("education", 2),
        ("skills", 2), ("references available", 2), ("certifications", 1), ("bachelor", 1),
        ("master of", 1), ("university", 1), ("linkedin", 1), ("objective", 1),
    ),
    "letter": (
        ("dear", 3), ("sincerely", 3), ("yours faithfully", 3), ("yours truly", 3),
        ("kind regards", 3), ("best regards", 3), ("to whom it may concern", 3),
        ("i am writing", 2), ("regards", 1), ("enclosed", 1), ("look forward", 1),
    ),
}  # fmt: skip
TEXT_LABELS: Final = tuple(_KEYWORDS)


def _phrase_pattern(phrase: str) -> re.Pattern[str]:
    return re.compile(r"\b" + r"\s+".join(map(re.escape, phrase.split())) + r"\b")


_PATTERNS: Final = {
    label: tuple((_phrase_pattern(phrase), weight) for phrase, weight in keywords)
    for label, keywords in _KEYWORDS.items()
}
_IMAGE_MAGIC: Final = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")
_W: Final = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_DOCX_BREAKS: Final = {f"{_W}p": "\n", f"{_W}br": "\n", f"{_W}cr": "\n", f"{_W}tab": "\t"}


def classify_text(text: str) -> Classification:
    """Label a text by weighted keyword evidence, with `other` when the evidence is weak."""
    if len(text.strip()) < 3:
        return _unreadable()
    normalised = text.casefold()
    raw = {
        label: sum(
            weight * min(len(pattern.findall(normalised)), MAX_HITS_PER_KEYWORD)
            for pattern, weight in patterns
        )
        for label, patterns in _PATTERNS.items()
    }
    total = sum(raw.values()) + OTHER_PRIOR
    scores = {label: raw.get(label, 0.0) / total for label in LABELS}
    scores["other"] = OTHER_PRIOR / total
    return _answer(scores)


def classify_file(doc: DocumentToClassify, file: IO[bytes]) -> Classification:
    """Classify a complete, seekable document by what its bytes are (not by its name)."""
    head = file.read(8)
    file.seek(0)
    if head.startswith(_IMAGE_MAGIC):
        return _answer({"image": IMAGE_CONFIDENCE, "other": 1 - IMAGE_CONFIDENCE})
    if head.startswith(b"%PDF-"):
        return classify_text(pdf_text(file))
    if head.startswith(b"PK\x03\x04"):
        return classify_text(docx_text(file))
    logger.info("unrecognised format", extra={"doc_id": doc.doc_id, "type": doc.content_type})
    return _unreadable()


def pdf_text(file: IO[bytes]) -> str:
    """Text of the first `MAX_PDF_PAGES` pages, at most `MAX_TEXT_CHARS` characters."""
    parts: list[str] = []
    chars = 0
    try:
        reader = PdfReader(file, strict=False)
        for index in range(min(len(reader.pages), MAX_PDF_PAGES)):
            page_text = reader.pages[index].extract_text() or ""
            parts.append(page_text)
            chars += len(page_text)
            if chars >= MAX_TEXT_CHARS:
                break
    except Exception as exc:
        # A malformed or encrypted PDF is a document we cannot read, not a failure to retry.
        logger.info("unreadable PDF: %s", exc)
    return "\n".join(parts)[:MAX_TEXT_CHARS]


def docx_text(file: IO[bytes]) -> str:
    """Text of `word/document.xml`, reading at most `MAX_DOCX_XML_BYTES` decompressed bytes."""
    try:
        with zipfile.ZipFile(file) as archive, archive.open("word/document.xml") as xml:
            return _wordprocessing_text(xml)
    except Exception as exc:
        # Not a ZIP, no document part, encrypted or truncated: an unreadable document.
        logger.info("unreadable DOCX: %s", exc)
        return ""


def _wordprocessing_text(xml: IO[bytes]) -> str:
    # An incremental parser fed a bounded number of bytes: a zip bomb is read only this far,
    # and expat (2.4+) refuses entity amplification and never loads external entities.
    parser: ElementTree.XMLPullParser[ElementTree.Element] = ElementTree.XMLPullParser(
        events=("end",)
    )
    parts: list[str] = []
    read = chars = 0
    while read < MAX_DOCX_XML_BYTES and chars < MAX_TEXT_CHARS:
        block = xml.read(min(64 * 1024, MAX_DOCX_XML_BYTES - read))
        if not block:
            break
        read += len(block)
        try:
            parser.feed(block)
            for event in parser.read_events():
                element = event[-1]
                if not isinstance(element, ElementTree.Element):
                    continue
                if element.tag == f"{_W}t" and element.text:
                    parts.append(element.text)
                    chars += len(element.text)
                elif element.tag in _DOCX_BREAKS:
                    parts.append(_DOCX_BREAKS[element.tag])
                    element.clear()
        except ElementTree.ParseError as exc:
            logger.info("malformed word/document.xml: %s", exc)
            break
    return "".join(parts)[:MAX_TEXT_CHARS]


def _answer(scores: Mapping[str, float]) -> Classification:
    rounded = {label: round(scores.get(label, 0.0), 4) for label in LABELS}
    label = max(LABELS, key=lambda candidate: rounded[candidate])
    return Classification(label, rounded[label], MODEL_VERSION, rounded)


def _unreadable() -> Classification:
    # No text to judge: `other`, with the rest of the belief spread over the text labels.
    share = (1 - UNREADABLE_CONFIDENCE) / len(TEXT_LABELS)
    return _answer({"other": UNREADABLE_CONFIDENCE} | dict.fromkeys(TEXT_LABELS, share))


class ContentSpool:
    """Collects streamed content, in memory up to a bound and then in a temporary file."""

    def __init__(
        self,
        doc: DocumentToClassify,
        *,
        max_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        memory_bytes: int = SPOOL_MEMORY_BYTES,
    ) -> None:
        if doc.size_bytes > max_bytes:
            raise ClassifierRejected(f"The document is larger than {max_bytes} bytes")
        self._doc = doc
        self._memory_bytes = memory_bytes
        self._digest = hashlib.sha256()
        self._file: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=memory_bytes)  # noqa: SIM115
        self.size = 0

    async def write(self, chunk: bytes) -> None:
        """Append a chunk; rejects content beyond the declared size before storing it."""
        self.size += len(chunk)
        if self.size > self._doc.size_bytes:
            raise ClassifierRejected(
                f"The content exceeds its declared {self._doc.size_bytes} bytes"
            )
        if self.size > self._memory_bytes:
            # Past the memory bound the spool writes to disk: keep that off the event loop.
            await asyncio.to_thread(self._absorb, chunk)
        else:
            self._absorb(chunk)

    def finish(self) -> IO[bytes]:
        """Check size and digest against the declaration and return the file, rewound."""
        if self.size != self._doc.size_bytes:
            raise ClassifierRejected(f"Received {self.size} bytes, declared {self._doc.size_bytes}")
        expected = self._doc.sha256.lower()
        if expected and self._digest.hexdigest() != expected:
            raise ClassifierRejected("The content does not match its declared sha256")
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        """Discard the spooled content."""
        self._file.close()

    def _absorb(self, chunk: bytes) -> None:
        self._digest.update(chunk)
        self._file.write(chunk)


def _discard(spool: ContentSpool, parsing: asyncio.Future[Classification]) -> None:
    spool.close()
    if not parsing.cancelled():
        parsing.exception()  # retrieved: nobody may be waiting for it any more


class InProcessClassifier:
    """The reference classifier in this process; parsing runs in a worker thread.

    A classification is bounded by `timeout_s`, as a gRPC call is by its deadline: past it the
    caller gets `ClassifierFailed` (a counted attempt: nothing outside the process was missing).
    A thread cannot be stopped, so a parse that overruns finishes in the background, bounded by
    the page and text limits above, and its spooled content is discarded when it does.
    """

    def __init__(
        self,
        *,
        max_content_bytes: int = DEFAULT_MAX_CONTENT_BYTES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._max_content_bytes = max_content_bytes
        self._timeout_s = timeout_s

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        """Spool the content, verify it, and classify it off the event loop, within the bound."""
        spool = ContentSpool(doc, max_bytes=self._max_content_bytes)
        parsing: asyncio.Future[Classification] | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                async for chunk in iter_content(content):
                    await spool.write(chunk)
                parsing = asyncio.ensure_future(
                    asyncio.to_thread(classify_file, doc, spool.finish())
                )
                # The thread reads the spool until it ends, whoever stopped waiting for it.
                parsing.add_done_callback(partial(_discard, spool))
                return await asyncio.shield(parsing)
        except TimeoutError:
            raise ClassifierFailed(
                f"The classifier did not finish within {self._timeout_s:g} s"
            ) from None
        finally:
            if parsing is None:
                spool.close()

    async def check(self) -> None:
        """Always healthy: there is nothing outside the process to reach."""

    async def aclose(self) -> None:
        """Nothing to release."""

"""The classifier protocol that the job worker talks to, and the values it exchanges.

Content goes in as `bytes` or, for anything large, as an async iterable of chunks straight from
storage (`Storage.read(key)`), so a 50 MB document is never held whole by the caller.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Protocol

LABELS: Final = ("invoice", "receipt", "contract", "resume", "letter", "image", "other")

Content = AsyncIterable[bytes] | bytes
"""A document's bytes: whole (small documents, tests) or streamed in chunks of any size."""


@dataclass(frozen=True, slots=True)
class DocumentToClassify:
    """What is known of a document before its bytes are read."""

    doc_id: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    """Lower-case hex digest of the whole content; empty skips the integrity check."""


@dataclass(frozen=True, slots=True)
class Classification:
    """A classifier's answer: the label, how sure it is, and every label's score."""

    label: str
    confidence: float
    model_version: str
    scores: dict[str, float] = field(default_factory=dict)


class Classifier(Protocol):
    """Labels documents; implemented in process (`InProcessClassifier`) and over gRPC."""

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        """Classify one document; raises a `ClassifierError` subclass when it cannot."""
        ...

    async def check(self) -> None:
        """Health check for readiness; raises `ClassifierUnavailable` when not serving."""
        ...

    async def aclose(self) -> None:
        """Release channels and threads."""
        ...


async def iter_content(content: Content) -> AsyncIterator[bytes]:
    """Yield the content's non-empty chunks, whichever form it came in."""
    if isinstance(content, bytes):
        if content:
            yield content
        return
    async for chunk in content:
        if chunk:
            yield chunk

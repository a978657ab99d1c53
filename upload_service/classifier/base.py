"""The classifier protocol that the job worker talks to, and the values it exchanges.

Content goes in as `bytes` or, for anything large, as an async iterable of chunks straight from
storage (`Storage.read(key)`), so a 50 MB document is never held whole by the caller.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Final, Protocol, TypeGuard

from upload_service.errors import ClassifierAnswerInvalid

LABELS: Final = ("invoice", "receipt", "contract", "resume", "letter", "image", "other")
MAX_ANSWER_CHARS: Final = 100
"""The longest label or model version a classifier may answer."""

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
    """A classifier's answer: the label, how sure it is, and every label's score.

    Built only from a sane answer: whatever a classifier says is checked here, at the boundary,
    because a document stores it and every later read serves it (`ClassifierAnswerInvalid`).
    """

    label: str
    confidence: float
    model_version: str
    scores: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        problem = answer_problem(self.label, self.confidence, self.model_version)
        if problem is not None:
            raise ClassifierAnswerInvalid(f"The classifier answered {problem}")


def answer_problem(label: object, confidence: object, model_version: object) -> str | None:
    """What is wrong with a classifier's answer, in words for the document's error, or None."""
    if not (_sane_text(label, min_chars=1) and label.strip()):
        return f"an unusable label ({_shown(label)})"
    if isinstance(confidence, bool) or not isinstance(confidence, int | float):
        return f"a confidence that is not a number ({_shown(confidence)})"
    if not (math.isfinite(confidence) and 0.0 <= confidence <= 1.0):
        return f"a confidence of {confidence:g}, outside 0 to 1"
    if not _sane_text(model_version, min_chars=0):
        return f"an unusable model version ({_shown(model_version)})"
    return None


def _sane_text(value: object, *, min_chars: int) -> TypeGuard[str]:
    return (
        isinstance(value, str)
        and min_chars <= len(value) <= MAX_ANSWER_CHARS
        and value.isprintable()
    )


def _shown(value: object) -> str:
    # The error is shown to the document's owner: a bounded, printable glimpse of the value.
    if isinstance(value, str):
        return f"{len(value)} characters: {value[:40]!a}" + ("…" if len(value) > 40 else "")
    return type(value).__name__


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

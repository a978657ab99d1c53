"""Document classification: the `Classifier` protocol and its two implementations.

- `reference.InProcessClassifier`: the reference classifier, in this process (the default when
  `CLASSIFIER_TARGET` is unset).
- `client.GrpcClassifier`: calls a `classifier.v1.DocumentClassifier` server over gRPC; the
  reference classifier is served by `server.py`.

Large documents are streamed, never sent whole: `Classify` is a client-streaming RPC whose first
message carries the document's metadata and whose later messages carry chunks of at most 1 MiB,
so a 50 MB document stays within gRPC's default 4 MB message limit (see `classifier.proto`).

The stubs in `v1/` are generated: `python -m upload_service.classifier.generate`.
"""

from __future__ import annotations

from upload_service.classifier.base import (
    LABELS,
    Classification,
    Classifier,
    Content,
    DocumentToClassify,
)

__all__ = [
    "LABELS",
    "Classification",
    "Classifier",
    "Content",
    "DocumentToClassify",
    "create_classifier",
]


def create_classifier(target: str | None, timeout_s: float) -> Classifier:
    """Build the gRPC client for `target`, or the in-process reference classifier without one."""
    # Imported here so that importing the package needs neither grpc stubs nor pypdf
    # (the stub generator itself imports it).
    if target:
        from upload_service.classifier.client import GrpcClassifier

        return GrpcClassifier(target, timeout_s)
    from upload_service.classifier.reference import InProcessClassifier

    return InProcessClassifier(timeout_s=timeout_s)

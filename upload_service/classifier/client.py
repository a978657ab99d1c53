"""The gRPC classifier client: one `grpc.aio` channel for the process, built by the lifespan.

- Content is streamed (see `classifier.proto`): one `document` message, then chunks of at most
  `chunk_bytes` (1 MiB), so no message approaches gRPC's 4 MB default limit.
- Every Classify call has a deadline of `timeout_s`, covering the whole stream and the answer.
- UNAVAILABLE is retried by the channel itself (the `retryPolicy` of its service config). gRPC can
  replay a client stream only while what it sent fits its per-call retry buffer (256 KiB by
  default) and no answer has begun; a larger document that meets UNAVAILABLE after that surfaces
  as `ClassifierUnavailable`, and retrying it (re-reading the content from storage) is the job
  queue's business, with its backoff and attempt count.
- Keepalive pings run only while a call is active, so the client needs nothing special from a
  server's ping policy; the deadline bounds a call on a dead connection either way.
- The current correlation id travels as `x-correlation-id` metadata.
- Status codes map to domain errors by whose fault they are. The classifier's absence:
  UNAVAILABLE, RESOURCE_EXHAUSTED, ABORTED → `ClassifierUnavailable`, DEADLINE_EXCEEDED →
  `ClassifierTimeout` (the queue waits for it without counting attempts; our server answers
  INTERNAL before the deadline when a document is merely slow, so this means hung or out of
  reach). The document:
  INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE → `ClassifierRejected` (no retry). Anything
  else (INTERNAL, UNKNOWN, …: the classifier crashed on it) → `ClassifierFailed`, a counted
  attempt; so is an answer outside the schema (`ClassifierAnswerInvalid`, from `Classification`).
- The channel redials a classifier that went away at most `MAX_RECONNECT_BACKOFF_MS` apart (gRPC's
  default grows to two minutes), so one that returns is noticed within seconds.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Final

import grpc
from grpc_health.v1 import health_pb2

from upload_service.classifier.base import (
    Classification,
    Content,
    DocumentToClassify,
    iter_content,
)
from upload_service.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from upload_service.errors import (
    ClassifierError,
    ClassifierFailed,
    ClassifierRejected,
    ClassifierTimeout,
    ClassifierUnavailable,
)
from upload_service.observability.context import correlation_id_var

SERVICE_NAME: Final = classifier_pb2.DESCRIPTOR.services_by_name["DocumentClassifier"].full_name
CORRELATION_HEADER: Final = "x-correlation-id"
CHUNK_BYTES: Final = 1024 * 1024
HEALTH_CHECK_METHOD: Final = "/grpc.health.v1.Health/Check"
MAX_RECONNECT_BACKOFF_MS: Final = 2000

# Only the classifier's methods retry: the health check should fail fast for readiness.
SERVICE_CONFIG: Final = {
    "methodConfig": [
        {
            "name": [{"service": SERVICE_NAME}],
            "retryPolicy": {
                "maxAttempts": 4,
                "initialBackoff": "0.1s",
                "maxBackoff": "1s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ]
}
CHANNEL_OPTIONS: Final = [
    ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
    ("grpc.enable_retries", 1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 250),
    ("grpc.min_reconnect_backoff_ms", 250),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
]
_REJECTED: Final = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.OUT_OF_RANGE,
    }
)
_UNAVAILABLE: Final = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)


class GrpcClassifier:
    """A `Classifier` that calls `classifier.v1.DocumentClassifier` over one `grpc.aio` channel."""

    def __init__(
        self,
        target: str,
        timeout_s: float = 10.0,
        *,
        health_timeout_s: float = 2.0,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        self._timeout_s = timeout_s
        self._health_timeout_s = health_timeout_s
        self._chunk_bytes = chunk_bytes
        self._channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
        self._stub = classifier_pb2_grpc.DocumentClassifierStub(self._channel)
        # grpc_health ships no typed stub; the typed channel method does the same job.
        self._health_check = self._channel.unary_unary(
            HEALTH_CHECK_METHOD,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        """Stream the document to the classifier and return its answer."""
        call = self._stub.Classify(None, timeout=self._timeout_s, metadata=_call_metadata())
        try:
            try:
                await call.write(classifier_pb2.ClassifyRequest(document=_document_info(doc)))
                async for piece in _pieces(content, self._chunk_bytes):
                    await call.write(classifier_pb2.ClassifyRequest(content=piece))
                await call.done_writing()
            except asyncio.InvalidStateError:
                pass  # the server ended the call before reading everything: its status says why
            response = await call
        except grpc.aio.AioRpcError as exc:
            raise _domain_error(exc) from exc
        finally:
            # A content stream that failed (storage) leaves the call open: end it now.
            if not call.done():
                call.cancel()
        return Classification(
            label=response.label,
            confidence=response.confidence,
            model_version=response.model_version,
            scores=dict(response.scores),
        )

    async def check(self) -> None:
        """Ask the standard health service whether the classifier service is SERVING."""
        request = health_pb2.HealthCheckRequest(service=SERVICE_NAME)
        try:
            response = await self._health_check(
                request, timeout=self._health_timeout_s, metadata=_call_metadata()
            )
        except grpc.aio.AioRpcError as exc:
            raise ClassifierUnavailable(f"health check: {exc.code().name}") from exc
        if response.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)
            raise ClassifierUnavailable(f"health check: {status}")

    async def aclose(self) -> None:
        """Close the channel, cancelling calls still in flight."""
        await self._channel.close(grace=None)


async def _pieces(content: Content, size: int) -> AsyncIterator[bytes]:
    # Storage may hand out chunks of any size; cut them so each message stays small.
    async for chunk in iter_content(content):
        if len(chunk) <= size:
            yield chunk
            continue
        view = memoryview(chunk)
        for start in range(0, len(view), size):
            yield bytes(view[start : start + size])


def _document_info(doc: DocumentToClassify) -> classifier_pb2.DocumentInfo:
    return classifier_pb2.DocumentInfo(
        doc_id=doc.doc_id,
        filename=doc.filename,
        content_type=doc.content_type,
        size_bytes=doc.size_bytes,
        sha256=doc.sha256,
    )


def _call_metadata() -> tuple[tuple[str, str], ...]:
    correlation_id = correlation_id_var.get()
    # gRPC refuses metadata values that are not printable ASCII; better no header than no call.
    if correlation_id and correlation_id.isascii() and correlation_id.isprintable():
        return ((CORRELATION_HEADER, correlation_id),)
    return ()


def _domain_error(exc: grpc.aio.AioRpcError) -> ClassifierError:
    code = exc.code()
    message = f"{code.name}: {(exc.details() or '')[:200]}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return ClassifierTimeout(message)
    if code in _REJECTED:
        return ClassifierRejected(message)
    if code in _UNAVAILABLE:
        return ClassifierUnavailable(message)
    return ClassifierFailed(message)

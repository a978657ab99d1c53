"""The gRPC classifier server: serves a `Classifier` (the reference one by default) on a port.

Beside `classifier.v1.DocumentClassifier` it serves the standard `grpc.health.v1.Health`, both for
the whole server ("") and for the classifier service, SERVING while up and NOT_SERVING once
stopping. Each classification is counted per document id in `ClassifierServicer.calls` and, with
`--count-file PATH` (or `CLASSIFIER_COUNT_FILE`), appended to that file as one line, so tests of
"classified exactly once" can read the count from another process.

A classification is bounded by the caller's deadline, less a margin for the answer's way back:
past it the servicer answers INTERNAL ("did not finish before the caller's deadline"), so the
caller learns that this document is too slow for it (a failed attempt) instead of meeting its own
deadline, which it must read as the classifier being unreachable or hung.

    python -m upload_service.classifier.server --port 50051 [--host 127.0.0.1] [--count-file F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from upload_service.classifier.base import Classifier, DocumentToClassify
from upload_service.classifier.reference import InProcessClassifier
from upload_service.classifier.v1 import classifier_pb2, classifier_pb2_grpc
from upload_service.errors import (
    ClassifierError,
    ClassifierRejected,
    ClassifierTimeout,
    ClassifierUnavailable,
)
from upload_service.observability.context import correlation_id_var

logger = logging.getLogger(__name__)

SERVICE_NAME: Final = classifier_pb2.DESCRIPTOR.services_by_name["DocumentClassifier"].full_name
CORRELATION_HEADER: Final = "x-correlation-id"
COUNT_FILE_ENV: Final = "CLASSIFIER_COUNT_FILE"
SERVER_OPTIONS: Final = [
    # Tolerate the client's keepalive pings, also between calls, instead of answering GOAWAY.
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
]

# At most this much, and at most a tenth of the call, is kept for the answer to reach the caller.
DEADLINE_MARGIN_S: Final = 0.5
OVERRUN_MESSAGE: Final = "The classifier did not finish before the caller's deadline"

ServicerContext = grpc.aio.ServicerContext[
    classifier_pb2.ClassifyRequest, classifier_pb2.ClassifyResponse
]


class ClassifierServicer(classifier_pb2_grpc.DocumentClassifierServicer):
    """Turns a Classify stream into a `Classifier.classify` call, and counts what it classified."""

    def __init__(self, classifier: Classifier, count_file: Path | None = None) -> None:
        self.classifier = classifier
        self.calls: Counter[str] = Counter()
        self.correlation_ids: dict[str, str | None] = {}
        # Line-buffered and append-only: each doc id reaches the file as soon as it is counted.
        self._count_file: IO[str] | None = (
            count_file.open("a", buffering=1, encoding="utf-8") if count_file else None
        )

    async def Classify(
        self,
        request_iterator: AsyncIterator[classifier_pb2.ClassifyRequest],
        context: ServicerContext,
    ) -> classifier_pb2.ClassifyResponse:
        """Classify one streamed document; errors become INVALID_ARGUMENT, UNAVAILABLE, …."""
        correlation_id = _metadata_value(context, CORRELATION_HEADER)
        token = correlation_id_var.set(correlation_id)
        try:
            first = await anext(request_iterator, None)
            if first is None or first.WhichOneof("part") != "document":
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "first message: document")
            doc = _document(first.document)
            self.correlation_ids[doc.doc_id] = correlation_id
            try:
                async with asyncio.timeout(_work_bound_s(context)) as bound:
                    result = await self.classifier.classify(doc, _content_of(request_iterator))
            except TimeoutError:
                if not bound.expired():
                    raise
                logger.warning("classify %s: %s", doc.doc_id, OVERRUN_MESSAGE)
                await context.abort(grpc.StatusCode.INTERNAL, OVERRUN_MESSAGE)
            except ClassifierError as exc:
                logger.warning("classify %s failed: %s", doc.doc_id, exc.message)
                await context.abort(_status_of(exc), exc.message)
            self._count(doc.doc_id)
            logger.info(
                "classified doc_id=%s label=%s confidence=%.3f correlation_id=%s",
                doc.doc_id,
                result.label,
                result.confidence,
                correlation_id,
            )
            return classifier_pb2.ClassifyResponse(
                label=result.label,
                confidence=result.confidence,
                model_version=result.model_version,
                scores=result.scores,
            )
        finally:
            correlation_id_var.reset(token)

    def close(self) -> None:
        """Close the count file."""
        if self._count_file is not None:
            self._count_file.close()
            self._count_file = None

    def _count(self, doc_id: str) -> None:
        self.calls[doc_id] += 1
        if self._count_file is not None:
            self._count_file.write(f"{doc_id}\n")


@dataclass
class RunningServer:
    """A started server: its port, its servicer (for counts) and its health service."""

    server: grpc.aio.Server
    port: int
    servicer: ClassifierServicer
    health: Any  # grpc_health's aio HealthServicer, which grpc-stubs does not describe

    @property
    def target(self) -> str:
        """The `host:port` a client dials (loopback)."""
        return f"127.0.0.1:{self.port}"

    async def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING through the health service."""
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def stop(self, grace: float | None = 5.0) -> None:
        """Report NOT_SERVING, let calls in flight finish within `grace`, then release all."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        self.servicer.close()
        await self.servicer.classifier.aclose()


async def serve(
    port: int,
    host: str = "127.0.0.1",
    *,
    classifier: Classifier | None = None,
    count_file: Path | None = None,
) -> RunningServer:
    """Start serving `classifier` (the reference one by default) on `host:port`; 0 picks a port."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    servicer = ClassifierServicer(classifier or InProcessClassifier(), count_file)
    classifier_pb2_grpc.add_DocumentClassifierServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    running = RunningServer(server, bound, servicer, health_servicer)
    await running.set_serving(True)
    logger.info("classifier server listening on %s:%d", host, bound)
    return running


def run_server(port: int, host: str = "127.0.0.1", *, count_file: Path | None = None) -> None:
    """Serve the reference classifier until SIGTERM or SIGINT, then stop gracefully."""
    asyncio.run(_serve_until_signalled(port, host, count_file))


async def _serve_until_signalled(port: int, host: str, count_file: Path | None) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    running = await serve(port, host, count_file=count_file)
    # One line on stdout for whoever started this process (scripts, tests) to wait for.
    print(f"classifier server listening on {host}:{running.port}", flush=True)
    await stopping.wait()
    logger.info("classifier server stopping")
    await running.stop()


async def _content_of(
    request_iterator: AsyncIterator[classifier_pb2.ClassifyRequest],
) -> AsyncIterator[bytes]:
    async for message in request_iterator:
        if message.WhichOneof("part") != "content":
            raise ClassifierRejected("Only the first message may carry the document")
        yield message.content


def _document(info: classifier_pb2.DocumentInfo) -> DocumentToClassify:
    return DocumentToClassify(
        doc_id=info.doc_id,
        filename=info.filename,
        content_type=info.content_type,
        size_bytes=info.size_bytes,
        sha256=info.sha256,
    )


def _work_bound_s(context: ServicerContext) -> float | None:
    """How long the classification may take and still be answered within the caller's deadline."""
    remaining = context.time_remaining()
    if remaining is None:
        return None
    return max(0.0, remaining - min(DEADLINE_MARGIN_S, remaining / 10))


def _metadata_value(context: ServicerContext, key: str) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == key and isinstance(value, str):
            return value
    return None


def _status_of(exc: ClassifierError) -> grpc.StatusCode:
    if isinstance(exc, ClassifierRejected):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, ClassifierTimeout):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    if isinstance(exc, ClassifierUnavailable):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


def main(argv: list[str] | None = None) -> None:
    """Command line: serve the reference classifier on a port until signalled."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=50051)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument(
        "--count-file",
        type=Path,
        default=os.environ.get(COUNT_FILE_ENV) or None,
        help=f"append each classified doc id to this file (env {COUNT_FILE_ENV})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with contextlib.suppress(KeyboardInterrupt):
        run_server(args.port, args.host, count_file=args.count_file)


if __name__ == "__main__":
    main()

"""The gRPC classifier over a real port: labels, large documents, metadata, deadlines, health."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from tests.fixtures.classifier import (
    NEVER_ANSWERS,
    ClassifierProcess,
    free_port,
    scripted_classifier,
    start_classifier_server,
)
from tests.samples import PDF, TEXTS, SampleDocument, pdf_bytes, sample_documents
from upload_service.classifier import Classification, Content, DocumentToClassify
from upload_service.classifier.client import GrpcClassifier
from upload_service.classifier.reference import InProcessClassifier
from upload_service.classifier.server import RunningServer, serve
from upload_service.classifier.v1 import classifier_pb2
from upload_service.errors import (
    ClassifierAnswerInvalid,
    ClassifierFailed,
    ClassifierRejected,
    ClassifierTimeout,
    ClassifierUnavailable,
    StorageUnavailable,
)
from upload_service.observability.context import correlation_id_var


def describe(sample: SampleDocument) -> DocumentToClassify:
    return DocumentToClassify(
        doc_id=f"doc_{uuid.uuid4().hex}",
        filename=sample.filename,
        content_type=sample.content_type,
        size_bytes=len(sample.content),
        sha256=sample.sha256,
    )


async def chunks_of(content: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


class SleepingClassifier:
    """Never finishes a document: it sleeps until it is cancelled."""

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        await asyncio.sleep(60)
        raise AssertionError("unreachable")

    async def check(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


class FlakyClassifier(InProcessClassifier):
    """Unavailable on its first call, the reference classifier afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        self.attempts += 1
        if self.attempts == 1:
            raise ClassifierUnavailable("warming up")
        return await super().classify(doc, content)


@pytest.fixture
async def client(classifier_server: str) -> AsyncIterator[GrpcClassifier]:
    grpc_classifier = GrpcClassifier(classifier_server, timeout_s=20)
    yield grpc_classifier
    await grpc_classifier.aclose()


@pytest.fixture
async def in_process_server() -> AsyncIterator[RunningServer]:
    running = await serve(0)
    yield running
    await running.stop(grace=0)


@pytest.mark.parametrize("sample", sample_documents(), ids=lambda sample: sample.filename)
async def test_each_kind_is_classified_once_over_grpc(
    client: GrpcClassifier, classifier_process: ClassifierProcess, sample: SampleDocument
) -> None:
    doc = describe(sample)

    result = await client.classify(doc, sample.content)

    assert result.label == sample.expected_label
    assert 0 < result.confidence <= 1
    assert result.scores[result.label] == result.confidence
    assert classifier_process.counts()[doc.doc_id] == 1


async def test_40_mb_document_is_streamed_and_classified(
    client: GrpcClassifier, classifier_process: ClassifierProcess
) -> None:
    content = pdf_bytes(TEXTS["invoice"][0], padding_bytes=40 * 1024 * 1024)
    sample = SampleDocument("big.pdf", PDF, content, "invoice")
    doc = describe(sample)

    # 8 MiB chunks from "storage": each is above gRPC's 4 MB default message limit.
    result = await client.classify(doc, chunks_of(content, 8 * 1024 * 1024))

    assert len(content) > 40_000_000
    assert result.label == "invoice"
    assert classifier_process.counts()[doc.doc_id] == 1


async def test_correlation_id_arrives_as_metadata(in_process_server: RunningServer) -> None:
    sample = sample_documents()[0]
    doc = describe(sample)
    grpc_classifier = GrpcClassifier(in_process_server.target, timeout_s=5)
    token = correlation_id_var.set("corr-7f3a")
    try:
        await grpc_classifier.classify(doc, sample.content)
    finally:
        correlation_id_var.reset(token)
        await grpc_classifier.aclose()

    assert in_process_server.servicer.correlation_ids[doc.doc_id] == "corr-7f3a"
    assert in_process_server.servicer.calls[doc.doc_id] == 1


async def test_deadline_fires_against_a_server_that_never_answers() -> None:
    sample = sample_documents()[0]
    async with scripted_classifier(NEVER_ANSWERS) as (target, _):
        grpc_classifier = GrpcClassifier(target, timeout_s=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(ClassifierTimeout):
                await grpc_classifier.classify(describe(sample), sample.content)
            assert time.monotonic() - started < 3
        finally:
            await grpc_classifier.aclose()


async def test_a_document_the_server_cannot_finish_in_time_is_its_failure_not_an_outage() -> None:
    running = await serve(0, classifier=SleepingClassifier())
    timeout_s = 2.0
    grpc_classifier = GrpcClassifier(running.target, timeout_s=timeout_s)
    sample = sample_documents()[0]
    try:
        started = time.monotonic()
        with pytest.raises(ClassifierFailed, match="did not finish before the caller's deadline"):
            await grpc_classifier.classify(describe(sample), sample.content)
        assert time.monotonic() - started < timeout_s
    finally:
        await grpc_classifier.aclose()
        await running.stop(grace=0)


async def test_nothing_listening_is_unavailable() -> None:
    grpc_classifier = GrpcClassifier(f"127.0.0.1:{free_port()}", timeout_s=5)
    sample = sample_documents()[0]
    try:
        with pytest.raises(ClassifierUnavailable):
            await grpc_classifier.classify(describe(sample), sample.content)
        with pytest.raises(ClassifierUnavailable):
            await grpc_classifier.check()
    finally:
        await grpc_classifier.aclose()


async def test_unavailable_is_retried_by_the_channel() -> None:
    flaky = FlakyClassifier()
    running = await serve(0, classifier=flaky)
    grpc_classifier = GrpcClassifier(running.target, timeout_s=5)
    sample = sample_documents()[0]
    try:
        result = await grpc_classifier.classify(describe(sample), sample.content)
    finally:
        await grpc_classifier.aclose()
        await running.stop(grace=0)

    assert result.label == sample.expected_label
    assert flaky.attempts == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (grpc.StatusCode.UNAVAILABLE, ClassifierUnavailable),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ClassifierUnavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, ClassifierTimeout),
        (grpc.StatusCode.INVALID_ARGUMENT, ClassifierRejected),
        (grpc.StatusCode.INTERNAL, ClassifierFailed),
        (grpc.StatusCode.UNKNOWN, ClassifierFailed),
    ],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
async def test_status_codes_say_whose_failure_it_is(
    status: grpc.StatusCode, error: type[Exception]
) -> None:
    sample = sample_documents()[0]
    async with scripted_classifier(status) as (target, _):
        grpc_classifier = GrpcClassifier(target, timeout_s=5)
        try:
            with pytest.raises(error) as raised:
                await grpc_classifier.classify(describe(sample), sample.content)
        finally:
            await grpc_classifier.aclose()
    assert type(raised.value) is error


async def test_an_answer_outside_the_schema_is_refused_at_the_client() -> None:
    sample = sample_documents()[0]
    answer = classifier_pb2.ClassifyResponse(label="invoice", confidence=1.7, model_version="m")
    async with scripted_classifier(answer) as (target, _):
        grpc_classifier = GrpcClassifier(target, timeout_s=5)
        try:
            with pytest.raises(ClassifierAnswerInvalid, match=r"confidence of 1\.7, outside"):
                await grpc_classifier.classify(describe(sample), sample.content)
        finally:
            await grpc_classifier.aclose()


async def test_content_not_matching_its_digest_is_rejected(client: GrpcClassifier) -> None:
    sample = sample_documents()[0]
    doc = DocumentToClassify("doc_bad", sample.filename, PDF, len(sample.content), "0" * 64)

    with pytest.raises(ClassifierRejected, match="INVALID_ARGUMENT"):
        await client.classify(doc, sample.content)


async def test_storage_failure_mid_stream_surfaces_as_itself(client: GrpcClassifier) -> None:
    sample = sample_documents()[0]

    async def failing_storage() -> AsyncIterator[bytes]:
        yield sample.content[:100]
        raise StorageUnavailable()

    with pytest.raises(StorageUnavailable):
        await client.classify(describe(sample), failing_storage())


async def test_health_check_passes_against_the_reference_server(client: GrpcClassifier) -> None:
    await client.check()


async def test_health_check_fails_when_the_server_is_not_serving(
    in_process_server: RunningServer,
) -> None:
    grpc_classifier = GrpcClassifier(in_process_server.target, timeout_s=5)
    try:
        await grpc_classifier.check()
        await in_process_server.set_serving(False)
        with pytest.raises(ClassifierUnavailable, match="NOT_SERVING"):
            await grpc_classifier.check()
    finally:
        await grpc_classifier.aclose()


def test_server_process_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    server = start_classifier_server(tmp_path)

    server.stop()

    assert server.process.returncode == 0
    assert "classifier server stopping" in server.log()

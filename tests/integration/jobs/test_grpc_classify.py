"""Classification over the gRPC classifier on a real loopback port: labels, outages, deadlines."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.fixtures.classifier import (
    NEVER_ANSWERS,
    ClassifierProcess,
    free_port,
    scripted_classifier,
    start_classifier_server,
)
from tests.integration.jobs.support import (
    finished,
    get_document,
    get_job,
    running_worker,
    store_document,
    wait_for_job,
)
from tests.samples import sample_documents
from upload_service.classifier.client import GrpcClassifier
from upload_service.classifier.v1 import classifier_pb2
from upload_service.jobs.queue import Backoff
from upload_service.main import create_app
from upload_service.observability.probes import check_readiness
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
async def grpc_classifier(classifier_server: str) -> AsyncIterator[GrpcClassifier]:
    classifier = GrpcClassifier(classifier_server, timeout_s=10)
    yield classifier
    await classifier.aclose()


async def test_documents_are_classified_over_grpc(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    grpc_classifier: GrpcClassifier,
    classifier_process: ClassifierProcess,
) -> None:
    samples = sample_documents()
    stored = [
        await store_document(
            pg_sessions,
            storage,
            sample.content,
            filename=sample.filename,
            content_type=sample.content_type,
            correlation_id=f"corr-{n}",
        )
        for n, sample in enumerate(samples)
    ]
    async with running_worker(pg_sessions, storage, grpc_classifier, make_settings()):
        for item in stored:
            assert item.task_id is not None
            job = await wait_for_job(pg_sessions, item.task_id, finished, timeout_s=30)
            assert (job.status, job.attempts) == ("succeeded", 1)
    counts = classifier_process.counts()
    for sample, item in zip(samples, stored, strict=True):
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "complete"
        assert document.classification is not None
        assert document.classification["label"] == sample.expected_label, sample.filename
        assert counts[item.doc_id] == 1


async def test_classifier_outage_retries_then_completes_when_it_returns(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    tmp_path: Path,
) -> None:
    port = free_port()
    server = start_classifier_server(tmp_path / "outage", port=port)
    classifier = GrpcClassifier(server.target, timeout_s=5)
    settings = make_settings()
    try:
        server.stop()
        item = await store_document(pg_sessions, storage, sample_documents()[0].content)
        assert item.task_id is not None
        backoff = Backoff(base_s=0.2, cap_s=0.5)
        async with running_worker(
            pg_sessions, storage, classifier, settings, backoff=backoff
        ) as worker:
            job = await wait_for_job(
                pg_sessions,
                item.task_id,
                lambda job: job.last_error is not None and job.status == "queued",
                timeout_s=20,
            )
            assert job.attempts == 0  # waiting for the classifier spends no attempt
            assert job.last_error is not None
            assert job.last_error.startswith("CLASSIFIER_UNAVAILABLE")
            assert f":{port}" not in job.last_error
            readiness = await check_readiness(
                engine=worker._engine,
                storage=storage,
                classifier=classifier,
                timeout_s=2,
                requires_classifier=False,
            )
            assert readiness.status == "degraded"
            assert readiness.checks["classifier"].startswith("error")
            assert (await get_document(pg_sessions, item.doc_id)).status != "failed"

            server = start_classifier_server(tmp_path / "outage", port=port)
            job = await wait_for_job(pg_sessions, item.task_id, finished, timeout_s=30)
        assert job.status == "succeeded"
        assert (await get_document(pg_sessions, item.doc_id)).status == "complete"
    finally:
        await classifier.aclose()
        server.stop()


async def test_a_classifier_that_never_answers_is_waited_for_until_the_retry_window_ends(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    async with scripted_classifier(NEVER_ANSWERS) as (target, servicer):
        classifier = GrpcClassifier(target, timeout_s=0.3)
        try:
            item = await store_document(
                pg_sessions, storage, b"%PDF-1.4 x", max_attempts=2, correlation_id="corr-deadline"
            )
            assert item.task_id is not None
            settings = make_settings(job_retry_window_s=2.0)
            backoff = Backoff(base_s=0.2, cap_s=0.5)
            async with running_worker(pg_sessions, storage, classifier, settings, backoff=backoff):
                first = await wait_for_job(
                    pg_sessions, item.task_id, lambda job: job.last_error is not None
                )
                # A deadline is the classifier's absence: no attempt spent, the document waits.
                assert (first.status, first.attempts) == ("queued", 0)
                assert first.last_error is not None
                assert first.last_error.startswith("CLASSIFIER_TIMEOUT")
                job = await wait_for_job(pg_sessions, item.task_id, finished)
            assert (job.status, job.attempts) == ("failed", 1)
            document = await get_document(pg_sessions, item.doc_id)
            assert document.status == "failed"
            assert document.error is not None
            assert "CLASSIFIER_TIMEOUT" in document.error["message"]
            assert "JOB_RETRY_WINDOW_S" in document.error["message"]
            assert (await get_job(pg_sessions, item.task_id)).locked_by is None
        finally:
            await classifier.aclose()
    # The calls carried the upload's correlation id as gRPC metadata.
    assert set(servicer.correlation_ids) == {"corr-deadline"}


@pytest.mark.parametrize(
    ("answer", "complaint"),
    [
        ({"label": "invoice", "confidence": 1.7}, "a confidence of 1.7, outside 0 to 1"),
        ({"label": "invoice", "confidence": float("nan")}, "a confidence of nan, outside 0 to 1"),
        ({"label": "x" * 5000, "confidence": 0.5}, "an unusable label (5000 characters"),
        ({"label": "invoice", "confidence": 0.5, "model_version": "v\n" * 200}, "model version"),
    ],
)
async def test_an_answer_outside_the_schema_fails_the_document_and_reads_stay_200(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    make_token: MakeToken,
    answer: dict[str, Any],
    complaint: str,
) -> None:
    settings = make_settings()
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=2)
    assert item.task_id is not None
    response = classifier_pb2.ClassifyResponse(**{"model_version": "scripted-1", **answer})
    async with scripted_classifier(response) as (target, servicer):
        classifier = GrpcClassifier(target, timeout_s=5)
        try:
            async with running_worker(pg_sessions, storage, classifier, settings):
                job = await wait_for_job(pg_sessions, item.task_id, finished)
        finally:
            await classifier.aclose()
    # A failed attempt, retried, then failed for good with the reason in words.
    assert (job.status, job.attempts, servicer.calls) == ("failed", 2, 2)
    headers = {"Authorization": f"Bearer {make_token('user-a')}"}
    async with running_app(create_app(settings)) as api:
        read = await api.get(f"/v1/documents/{item.doc_id}", headers=headers)
        listed = await api.get("/v1/documents", headers=headers)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "failed"
    assert read.json()["classification"] is None
    assert read.json()["error"]["code"] == "CLASSIFICATION_FAILED"
    assert complaint in read.json()["error"]["message"]
    assert listed.status_code == 200, listed.text
    assert [doc["doc_id"] for doc in listed.json()["items"]] == [item.doc_id]

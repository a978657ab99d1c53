"""Dependency outages lose nothing: jobs wait for the classifier (and the webhook receiver)
without spending attempts, within the retry window, and the classifier is not hammered."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import timedelta
from pathlib import Path

import grpc
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings, MakeToken, running_app
from tests.fixtures.classifier import free_port, scripted_classifier, start_classifier_server
from tests.integration.jobs.support import (
    FlakyClassifier,
    WebhookReceiver,
    finished,
    get_document,
    jobs_of,
    running_worker,
    store_document,
    wait_for,
    wait_for_job,
)
from tests.samples import sample_documents
from upload_service.classifier.client import GrpcClassifier
from upload_service.classifier.reference import InProcessClassifier
from upload_service.classifier.v1 import classifier_pb2
from upload_service.jobs.breaker import CircuitBreaker
from upload_service.jobs.leases import expired_waits
from upload_service.jobs.queue import Backoff, utc_now
from upload_service.main import create_app
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]
# Two attempts' backoff is at most 0.1 + 0.2 s: an outage of seconds outlasts it many times.
BACKOFF = Backoff(base_s=0.1, cap_s=0.4)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


async def test_documents_uploaded_while_the_classifier_is_down_all_complete_when_it_returns(
    pg_sessions: Sessions,
    make_settings: MakeSettings,
    make_token: MakeToken,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    port = free_port()
    classifier_server = start_classifier_server(tmp_path / "classifier", port=port)
    classifier_server.stop()  # down before anything is uploaded
    settings = make_settings(
        job_max_attempts=2,
        classifier_target=classifier_server.target,
        notification_url=receiver.url,
        notification_secret="webhook-secret",
    )
    headers = {"Authorization": f"Bearer {make_token('user-a')}"}
    samples = sample_documents()
    classifier = GrpcClassifier(classifier_server.target, timeout_s=5)
    storage = LocalStorage(settings.local_storage_dir)
    try:
        async with (
            running_app(create_app(settings)) as api,
            running_worker(pg_sessions, storage, classifier, settings, backoff=BACKOFF),
        ):
            uploaded: dict[str, str] = {}
            for sample in samples:
                response = await api.post(
                    "/v1/documents",
                    files={"file": (sample.filename, sample.content)},
                    headers=headers,
                )
                assert response.status_code == 202, response.text
                uploaded[response.json()["doc_id"]] = sample.expected_label

            # The worker has met the outage; it then lasts many attempts' backoff more.
            await wait_for(
                lambda: jobs_of(pg_sessions, kind="classify"),
                lambda jobs: any(job.last_error for job in jobs),
                timeout_s=20,
            )
            await asyncio.sleep(2.0)
            for job in await jobs_of(pg_sessions, kind="classify"):
                # Jobs that met the outage wait without spending attempts; the rest were held
                # back by the breaker and never sent.
                assert (job.status, job.attempts) == ("queued", 0)
                assert job.last_error in (
                    None,
                    "CLASSIFIER_UNAVAILABLE: The classifier is unavailable",
                )
            for doc_id in uploaded:
                response = await api.get(f"/v1/documents/{doc_id}", headers=headers)
                assert response.json()["status"] == "queued"

            classifier_server = start_classifier_server(tmp_path / "classifier", port=port)
            documents = await wait_for(
                lambda: _documents(api, headers, list(uploaded)),
                lambda documents: all(d["status"] in ("complete", "failed") for d in documents),
                timeout_s=30,
            )
            await wait_for(
                lambda: asyncio.sleep(0, len(receiver.requests)),
                lambda count: count >= len(uploaded),
                timeout_s=20,
            )
            await asyncio.sleep(0.5)  # a duplicate, were one coming, would have come by now

        for document in documents:
            assert document["status"] == "complete", document
            assert document["classification"]["label"] == uploaded[document["doc_id"]]
        assert classifier_server.counts() == Counter(dict.fromkeys(uploaded, 1))
        events = [json.loads(request.body) for request in receiver.requests]
        assert Counter(event["event_id"] for event in events).most_common(1)[0][1] == 1
        assert sorted(event["doc_id"] for event in events) == sorted(uploaded)
        assert {event["event"] for event in events} == {"document.completed"}
    finally:
        await classifier.aclose()
        classifier_server.stop()


async def _documents(
    api: httpx.AsyncClient, headers: dict[str, str], doc_ids: list[str]
) -> list[dict[str, object]]:
    return [
        (await api.get(f"/v1/documents/{doc_id}", headers=headers)).json() for doc_id in doc_ids
    ]


async def test_an_unavailable_classifier_costs_no_attempts(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=2)
    classifier = FlakyClassifier(failures=5)  # ClassifierUnavailable five times
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert len(classifier.call_times) == 6
    assert (await get_document(pg_sessions, item.doc_id)).status == "complete"


async def test_the_wait_ends_after_the_retry_window_with_a_clear_error(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=5)
    settings = make_settings(job_retry_window_s=1.0)
    async with running_worker(pg_sessions, storage, FlakyClassifier(failures=None), settings):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error is not None
    assert job.last_error.startswith("CLASSIFIER_UNAVAILABLE")
    assert "JOB_RETRY_WINDOW_S" in job.last_error
    document = await get_document(pg_sessions, item.doc_id)
    assert document.status == "failed"
    assert document.error is not None
    assert "JOB_RETRY_WINDOW_S" in document.error["message"]


async def test_the_retry_window_ends_the_wait_while_the_breaker_holds_the_jobs_back(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    documents = 5
    items = [
        await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=5)
        for _ in range(documents)
    ]
    settings = make_settings(
        job_retry_window_s=1.0,
        notification_url=receiver.url,
        notification_secret="webhook-secret",
    )
    # Nothing listens there: every call is unavailable and every health probe fails.
    classifier = GrpcClassifier(f"127.0.0.1:{free_port()}", timeout_s=2)
    try:
        async with running_worker(
            pg_sessions,
            storage,
            classifier,
            settings,
            concurrency=2,
            breaker=CircuitBreaker(probe_base_s=0.1, probe_cap_s=0.5),
        ):
            jobs = await wait_for(
                lambda: jobs_of(pg_sessions, kind="classify"),
                lambda jobs: all(finished(job) for job in jobs),
                timeout_s=15,
            )
            await wait_for(
                lambda: asyncio.sleep(0, len(receiver.requests)),
                lambda count: count >= documents,
                timeout_s=10,
            )
    finally:
        await classifier.aclose()

    for job in jobs:
        assert job.status == "failed"
        assert job.last_error is not None
        assert job.last_error.startswith("CLASSIFIER_UNAVAILABLE")
        assert "s of waiting (JOB_RETRY_WINDOW_S)" in job.last_error
    for item in items:
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "failed"
        assert document.error is not None
        assert "JOB_RETRY_WINDOW_S" in document.error["message"]
    events = [json.loads(request.body) for request in receiver.requests]
    assert sorted(event["doc_id"] for event in events) == sorted(item.doc_id for item in items)
    assert {event["event"] for event in events} == {"document.failed"}


async def test_a_job_never_tried_counts_as_waiting_only_once_the_outage_lasted_the_window(
    pg_sessions: Sessions, storage: LocalStorage
) -> None:
    # Due for two hours but never tried: an old backlog, not yet proof of a long outage.
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    later = utc_now() + timedelta(hours=2)
    async with pg_sessions() as session, session.begin():
        conn = await session.connection()
        young_outage = await expired_waits(
            conn, "classify", window_s=3600, limit=10, include_untried=False, now=later
        )
        long_outage = await expired_waits(
            conn, "classify", window_s=3600, limit=10, include_untried=True, now=later
        )

    assert young_outage == []
    assert [job.doc_id for job in long_outage] == [item.doc_id]


async def test_resource_exhausted_is_waited_out_and_the_breaker_spares_the_classifier(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    documents = 30
    items = [
        await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=2)
        for _ in range(documents)
    ]
    async with scripted_classifier(grpc.StatusCode.RESOURCE_EXHAUSTED) as (target, servicer):
        classifier = GrpcClassifier(target, timeout_s=5)
        try:
            async with running_worker(
                pg_sessions,
                storage,
                classifier,
                make_settings(),
                backoff=Backoff(base_s=0.02, cap_s=0.1),
                concurrency=2,
            ):
                await asyncio.sleep(1.5)
                calls_during_the_outage = servicer.calls
                servicer.answer = classifier_pb2.ClassifyResponse(
                    label="invoice", confidence=0.8, model_version="scripted-1"
                )
                for item in items:
                    assert item.task_id is not None
                    await wait_for_job(pg_sessions, item.task_id, finished, timeout_s=20)
        finally:
            await classifier.aclose()

    # Without the breaker every job would have tried, again and again, every ~0.1 s.
    assert 3 <= calls_during_the_outage < documents
    jobs = await jobs_of(pg_sessions, kind="classify")
    assert [(job.status, job.attempts) for job in jobs] == [("succeeded", 1)] * documents
    for item in items:
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "complete"
        assert document.classification is not None
        assert document.classification["label"] == "invoice"


async def test_an_in_process_classification_past_its_time_is_a_failed_attempt(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    content = sample_documents()[0].content
    item = await store_document(pg_sessions, storage, content, max_attempts=2)
    classifier = InProcessClassifier(timeout_s=1e-6)
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.last_error is not None
    assert "did not finish within" in job.last_error
    document = await get_document(pg_sessions, item.doc_id)
    assert document.status == "failed"

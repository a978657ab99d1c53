"""The worker on real PostgreSQL with in-process classifiers: outcomes a user can observe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    BlockingClassifier,
    FixedClassifier,
    FlakyClassifier,
    WebhookReceiver,
    finished,
    get_document,
    get_job,
    jobs_of,
    running_worker,
    store_document,
    wait_for,
    wait_for_job,
)
from tests.samples import sample_documents
from upload_service.classifier.base import Classification, Content, DocumentToClassify
from upload_service.classifier.reference import InProcessClassifier
from upload_service.db.models import Document, DocumentEvent, Job
from upload_service.errors import ClassifierFailed, ClassifierRejected
from upload_service.jobs.queue import Backoff, enqueue
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


async def test_documents_are_classified_with_the_right_label(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    samples = sample_documents()
    stored = [
        await store_document(
            pg_sessions,
            storage,
            sample.content,
            filename=sample.filename,
            content_type=sample.content_type,
        )
        for sample in samples
    ]
    classifier = InProcessClassifier()
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        for item in stored:
            assert item.task_id is not None
            job = await wait_for_job(pg_sessions, item.task_id, finished)
            assert (job.status, job.attempts) == ("succeeded", 1)

    for sample, item in zip(samples, stored, strict=True):
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "complete", sample.filename
        assert document.error is None
        assert document.classification is not None
        assert document.classification["label"] == sample.expected_label, sample.filename
        assert 0 < document.classification["confidence"] <= 1
        assert document.classification["model_version"]
    # No webhook configured: no notification jobs.
    assert await jobs_of(pg_sessions, kind="notify") == []


def crash() -> Exception:
    """The classifier failing on the document itself: a counted attempt."""
    return ClassifierFailed("INTERNAL: the classifier crashed on it")


async def test_failed_attempts_are_retried_with_backoff_then_succeed(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 invoice")
    classifier = FlakyClassifier(failures=2, error=crash)
    backoff = Backoff(base_s=0.2, cap_s=1.0)
    async with running_worker(pg_sessions, storage, classifier, make_settings(), backoff=backoff):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)

    assert (job.status, job.attempts) == ("succeeded", 3)
    assert job.last_error is not None
    assert job.last_error.startswith("CLASSIFICATION_FAILED: INTERNAL")
    first_gap = classifier.call_times[1] - classifier.call_times[0]
    second_gap = classifier.call_times[2] - classifier.call_times[1]
    # Equal jitter: after attempt n the delay is in [ceiling/2, ceiling], ceiling = 0.2 * 2^(n-1).
    assert first_gap >= 0.1
    assert second_gap >= 0.2
    assert (await get_document(pg_sessions, item.doc_id)).status == "complete"


async def test_poison_job_fails_its_document_after_max_attempts(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=3)
    classifier = FlakyClassifier(failures=None, error=crash)
    settings = make_settings(notification_url="http://127.0.0.1:9/hook")
    async with running_worker(pg_sessions, storage, classifier, settings):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
        await asyncio.sleep(0.3)  # a fourth attempt, were there one, would have come by now

    assert (job.status, job.attempts) == ("failed", 3)
    assert len(classifier.call_times) == 3
    assert job.last_error == "CLASSIFICATION_FAILED: INTERNAL: the classifier crashed on it"
    document = await get_document(pg_sessions, item.doc_id)
    assert document.status == "failed"
    assert document.classification is None
    assert document.error is not None
    assert document.error["code"] == "CLASSIFICATION_FAILED"
    assert "3 attempt(s)" in document.error["message"]
    assert "the classifier crashed on it" in document.error["message"]
    [notify] = await jobs_of(pg_sessions, kind="notify")
    event = notify.payload["event"]
    assert (event["event"], event["status"], event["doc_id"]) == (
        "document.failed",
        "failed",
        item.doc_id,
    )
    assert event["error"] == document.error
    assert "classification" not in event


async def test_a_document_the_classifier_refuses_fails_without_retries(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", max_attempts=5)
    classifier = FlakyClassifier(failures=None, error=lambda: ClassifierRejected("unreadable"))
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("failed", 1)
    assert (await get_document(pg_sessions, item.doc_id)).status == "failed"


async def test_missing_bytes_fail_the_document_at_once(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    document = await get_document(pg_sessions, item.doc_id)
    await storage.delete(document.storage_key)
    async with running_worker(pg_sessions, storage, FixedClassifier(), make_settings()):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("failed", 1)
    assert job.last_error == "The document's bytes are missing from storage"
    assert str(storage.root) not in (job.last_error or "")


async def test_a_deleted_document_ends_its_job_quietly(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    async with pg_sessions.begin() as session:
        await session.delete(await session.get(Document, item.doc_id))
    classifier = FixedClassifier()
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        assert item.task_id is not None
        job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert job.status == "succeeded"
    assert classifier.calls == []


class LabelPerDocument(BlockingClassifier):
    """Holds every call until released, then answers the label chosen for that document."""

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__()
        self.labels = labels

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        await super().classify(doc, content)
        return Classification(self.labels[doc.doc_id], 0.5, "per-doc")


async def test_a_batch_of_successes_gives_each_document_its_own_label_and_skips_a_deleted_one(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    items = [await store_document(pg_sessions, storage, b"%PDF-1.4 x") for _ in range(4)]
    names = ["invoice", "receipt", "contract", "letter"]
    labels = {item.doc_id: name for item, name in zip(items, names, strict=True)}
    classifier = LabelPerDocument(labels)
    settings = make_settings(notification_url=receiver.url)
    async with running_worker(pg_sessions, storage, classifier, settings):
        # All four are claimed and held; one document goes away meanwhile.
        await wait_for(
            lambda: jobs_of(pg_sessions, kind="classify"),
            lambda jobs: all(job.status == "running" for job in jobs),
        )
        async with pg_sessions.begin() as session:
            await session.delete(await session.get(Document, items[1].doc_id))
        classifier.release.set()  # They end together: their successes commit as one batch.
        for item in items:
            assert item.task_id is not None
            job = await wait_for_job(pg_sessions, item.task_id, finished)
            assert (job.status, job.attempts) == ("succeeded", 1)
        notified = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"), lambda jobs: len(jobs) >= 3
        )
    for item in (items[0], items[2], items[3]):
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "complete"
        assert document.error is None
        assert document.classification == {
            "label": labels[item.doc_id],
            "confidence": 0.5,
            "model_version": "per-doc",
        }
    # One webhook delivery for each document completed, none for the one deleted.
    assert sorted(job.doc_id or "" for job in notified) == sorted(
        [items[0].doc_id, items[2].doc_id, items[3].doc_id]
    )
    async with pg_sessions() as session:
        events = (await session.scalars(select(DocumentEvent).order_by(DocumentEvent.id))).all()
    completed = [e.doc_id for e in events if e.data.get("status") == "complete"]
    assert sorted(completed) == sorted([items[0].doc_id, items[2].doc_id, items[3].doc_id])
    assert all(
        e.data["classification"]["label"] == labels[e.doc_id]
        for e in events
        if e.data.get("status") == "complete"
    )


async def test_each_job_runs_under_its_correlation_id(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    items = [
        await store_document(pg_sessions, storage, b"%PDF-1.4 x", correlation_id=f"corr-{n}")
        for n in range(3)
    ]
    classifier = FixedClassifier()
    async with running_worker(pg_sessions, storage, classifier, make_settings()):
        for item in items:
            assert item.task_id is not None
            await wait_for_job(pg_sessions, item.task_id, finished)
    seen = dict(zip(classifier.calls, classifier.correlation_ids, strict=True))
    assert seen == {item.doc_id: f"corr-{n}" for n, item in enumerate(items)}


async def test_stop_hands_unfinished_jobs_back_at_once(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    assert item.task_id is not None
    blocking = BlockingClassifier()
    settings = make_settings(job_lease_s=60)
    async with running_worker(pg_sessions, storage, blocking, settings, stop_timeout_s=0.2):
        await asyncio.wait_for(blocking.started.wait(), 10)
        assert (await get_document(pg_sessions, item.doc_id)).status == "processing"

    job = await get_job(pg_sessions, item.task_id)
    assert (job.status, job.attempts, job.locked_by) == ("queued", 0, None)
    assert (await get_document(pg_sessions, item.doc_id)).status == "queued"
    # Claimable at once by another worker: no waiting for the 60 s lease.
    async with running_worker(pg_sessions, storage, FixedClassifier(), settings):
        job = await wait_for_job(pg_sessions, item.task_id, finished, timeout_s=5)
    assert (job.status, job.attempts) == ("succeeded", 1)


async def test_stop_lets_running_jobs_finish_within_the_grace_period(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    assert item.task_id is not None
    blocking = BlockingClassifier()
    async with running_worker(pg_sessions, storage, blocking, make_settings()) as worker:
        await asyncio.wait_for(blocking.started.wait(), 10)
        stopping = asyncio.create_task(worker.stop(5))
        await asyncio.sleep(0.2)
        assert not stopping.done()
        blocking.release.set()
        await asyncio.wait_for(stopping, 5)
    job = await get_job(pg_sessions, item.task_id)
    assert (job.status, job.attempts) == ("succeeded", 1)


async def test_a_live_worker_keeps_its_job_beyond_the_lease_by_renewing_it(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    assert item.task_id is not None
    slow = BlockingClassifier()
    other = FixedClassifier()
    settings = make_settings(job_lease_s=1.0)
    async with running_worker(pg_sessions, storage, slow, settings):
        await asyncio.wait_for(slow.started.wait(), 10)
        # A second worker polls the queue all along: it must never get the job.
        async with running_worker(pg_sessions, storage, other, settings):
            await asyncio.sleep(2.5)  # two and a half leases long
            slow.release.set()
            job = await wait_for_job(pg_sessions, item.task_id, finished)
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert other.calls == []


async def test_a_worker_that_loses_its_lease_leaves_no_trace(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    assert item.task_id is not None
    blocking = BlockingClassifier()
    settings = make_settings(job_lease_s=0.6)
    async with running_worker(pg_sessions, storage, blocking, settings) as worker:
        await asyncio.wait_for(blocking.started.wait(), 10)
        # Another worker took the job over (as after a long pause of this one).
        async with pg_sessions.begin() as session:
            await session.execute(
                update(Job).where(Job.id == item.task_id).values(locked_by="someone-else")
            )
        await wait_for(lambda: asyncio.sleep(0, worker.running_job_ids), lambda ids: not ids)
        blocking.release.set()
    job = await get_job(pg_sessions, item.task_id)
    assert (job.status, job.locked_by) == ("running", "someone-else")
    assert (await get_document(pg_sessions, item.doc_id)).status == "processing"


async def test_purge_deletes_the_object(
    pg_sessions: Sessions, storage: LocalStorage, make_settings: MakeSettings
) -> None:
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", queue=False)
    key = (await get_document(pg_sessions, item.doc_id)).storage_key
    async with pg_sessions.begin() as session:
        purge = await enqueue(session, kind="purge", payload={"storage_key": key})
        janitor = await enqueue(session, kind="janitor")
    async with running_worker(pg_sessions, storage, FixedClassifier(), make_settings()):
        assert (await wait_for_job(pg_sessions, purge.id, finished)).status == "succeeded"
        assert (await wait_for_job(pg_sessions, janitor.id, finished)).status == "succeeded"
    assert not await storage.exists(key)

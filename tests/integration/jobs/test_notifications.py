"""Webhook notifications through a real HTTP receiver on 127.0.0.1: retried, signed, stable ids."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import MakeSettings
from tests.integration.jobs.support import (
    FixedClassifier,
    FlakyClassifier,
    WebhookReceiver,
    finished,
    jobs_of,
    running_worker,
    store_document,
    wait_for,
)
from upload_service.errors import ClassifierRejected
from upload_service.jobs.queue import Backoff
from upload_service.storage.local import LocalStorage

Sessions = async_sessionmaker[AsyncSession]
SECRET = "webhook-secret-for-tests"


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


def _verify(body: bytes, header: str) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header)


async def test_notification_arrives_once_the_receiver_is_up_and_is_signed(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    await receiver.stop()  # down: connections are refused
    settings = make_settings(notification_url=receiver.url, notification_secret=SECRET)
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x", correlation_id="corr-up")
    async with running_worker(pg_sessions, storage, FixedClassifier("receipt"), settings):
        [notify] = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"),
            lambda jobs: len(jobs) == 1 and jobs[0].last_error and jobs[0].status == "queued",
        )
        assert notify.attempts == 0  # waiting for the receiver spends no attempt
        assert notify.last_error is not None
        assert notify.last_error.startswith("The webhook could not be reached")
        assert receiver.url not in notify.last_error

        await receiver.start()  # up again, same port
        [notify] = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"), lambda jobs: finished(jobs[0])
        )
    assert notify.status == "succeeded"
    [request] = receiver.requests
    assert (request.method, request.path) == ("POST", "/hooks/documents")
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-correlation-id"] == "corr-up"
    assert _verify(request.body, request.headers["x-signature"])
    body = json.loads(request.body)
    assert request.headers["x-event-id"] == body["event_id"]
    assert re.fullmatch(r"evt_[0-9A-Z]{26}", body["event_id"])
    assert body["event"] == "document.completed"
    assert (body["doc_id"], body["owner"], body["status"]) == (item.doc_id, "user-a", "complete")
    assert body["classification"] == {
        "label": "receipt",
        "confidence": 0.9,
        "model_version": "fixed-1",
    }
    assert "error" not in body
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["occurred_at"])


async def test_non_2xx_answers_are_retried_with_the_same_event_id(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    receiver.status = 503
    settings = make_settings(notification_url=receiver.url, notification_secret=SECRET)
    await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    async with running_worker(pg_sessions, storage, FixedClassifier(), settings):
        await wait_for(lambda: _requests(receiver), lambda count: count >= 2)
        receiver.status = 204
        [notify] = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"), lambda jobs: finished(jobs[0])
        )
    assert notify.status == "succeeded"
    assert notify.last_error == "The webhook answered 503"
    event_ids = {request.headers["x-event-id"] for request in receiver.requests}
    bodies = {request.body for request in receiver.requests}
    assert len(event_ids) == 1
    assert len(bodies) == 1  # byte for byte the same event every time
    assert all(_verify(r.body, r.headers["x-signature"]) for r in receiver.requests)


async def _requests(receiver: WebhookReceiver) -> int:
    return len(receiver.requests)


async def test_a_receiver_answering_503_and_429_for_a_while_gets_every_event(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    settings = make_settings(
        notification_url=receiver.url, notification_secret=SECRET, job_max_attempts=2
    )
    items = [await store_document(pg_sessions, storage, b"%PDF-1.4 x") for _ in range(3)]
    receiver.status = 503
    backoff = Backoff(base_s=0.05, cap_s=2.0)  # a cap above the Retry-After asked for
    async with running_worker(pg_sessions, storage, FixedClassifier(), settings, backoff=backoff):
        # Well past two attempts' worth of failures for every event.
        await wait_for(lambda: _requests(receiver), lambda count: count >= 3 * len(items))
        receiver.status, receiver.headers = 429, {"Retry-After": "1"}
        await wait_for(lambda: _answered(receiver, 429), lambda count: count >= 1)
        receiver.status, receiver.headers = 200, {}
        notifies = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"),
            lambda jobs: len(jobs) == len(items) and all(finished(job) for job in jobs),
            timeout_s=15,
        )
    assert [(job.status, job.attempts) for job in notifies] == [("succeeded", 1)] * len(items)
    delivered = [json.loads(r.body) for r in receiver.requests if r.status == 200]
    assert sorted(event["doc_id"] for event in delivered) == sorted(i.doc_id for i in items)
    # Every retry repeated its event: one event id per document, however many requests.
    assert len({request.headers["x-event-id"] for request in receiver.requests}) == len(items)
    # After a 429 with `Retry-After: 1` the same event came back no sooner than asked.
    for refused in (r for r in receiver.requests if r.status == 429):
        later = [
            r.at
            for r in receiver.requests
            if r.at > refused.at and r.headers["x-event-id"] == refused.headers["x-event-id"]
        ]
        assert later, "the event refused with 429 was never sent again"
        assert min(later) - refused.at >= 0.9


async def _answered(receiver: WebhookReceiver, status: int) -> int:
    return sum(1 for request in receiver.requests if request.status == status)


async def test_a_failed_document_is_notified_with_its_error(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    settings = make_settings(notification_url=receiver.url, notification_secret=SECRET)
    item = await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    refusing = FlakyClassifier(failures=None, error=lambda: ClassifierRejected("unreadable PDF"))
    async with running_worker(pg_sessions, storage, refusing, settings):
        await wait_for(lambda: _requests(receiver), lambda count: count == 1)
    body = json.loads(receiver.requests[0].body)
    assert (body["event"], body["doc_id"], body["status"]) == (
        "document.failed",
        item.doc_id,
        "failed",
    )
    assert body["error"]["code"] == "CLASSIFICATION_FAILED"
    assert "unreadable PDF" in body["error"]["message"]
    assert "classification" not in body


async def test_a_receiver_that_refuses_the_event_spends_attempts_until_it_fails(
    pg_sessions: Sessions,
    storage: LocalStorage,
    make_settings: MakeSettings,
    receiver: WebhookReceiver,
) -> None:
    receiver.status = 410  # not an outage: the receiver does not want it
    settings = make_settings(notification_url=receiver.url, job_max_attempts=2)
    await store_document(pg_sessions, storage, b"%PDF-1.4 x")
    async with running_worker(pg_sessions, storage, FixedClassifier(), settings):
        [notify] = await wait_for(
            lambda: jobs_of(pg_sessions, kind="notify"),
            lambda jobs: len(jobs) == 1 and finished(jobs[0]),
        )
    assert (notify.status, notify.attempts, notify.last_error) == (
        "failed",
        2,
        "The webhook answered 410",
    )
    assert len(receiver.requests) == 2

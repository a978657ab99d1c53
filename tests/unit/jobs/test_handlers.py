"""Pure parts of the handlers: the webhook signature, the event body, safe error text."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime

import httpx
import pytest

from upload_service.errors import (
    ClassifierAnswerInvalid,
    ClassifierFailed,
    ClassifierRejected,
    ClassifierTimeout,
    ClassifierUnavailable,
    DatabaseUnavailable,
    StorageUnavailable,
)
from upload_service.jobs.handler_context import PermanentJobError
from upload_service.jobs.handlers import (
    describe_error,
    is_permanent,
    is_unavailable,
    requested_delay_s,
)
from upload_service.jobs.notifications import (
    WebhookDeliveryFailed,
    WebhookUnavailable,
    document_event,
    retry_after_s,
    signature,
)


def test_signature_is_the_hex_hmac_sha256_of_the_raw_body() -> None:
    body = b'{"event":"document.completed"}'
    expected = hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert signature("s3cret", body) == f"sha256={expected}"


def test_completed_event_has_the_contract_fields() -> None:
    event = document_event(
        event="document.completed",
        doc_id="doc_1",
        owner="user-a",
        status="complete",
        classification={"label": "invoice", "confidence": 0.9, "model_version": "m"},
        occurred_at=datetime(2026, 1, 15, 10, 30, tzinfo=UTC),
    )
    assert re.fullmatch(r"evt_[0-9A-Z]{26}", event.pop("event_id"))
    assert event == {
        "event": "document.completed",
        "doc_id": "doc_1",
        "owner": "user-a",
        "status": "complete",
        "classification": {"label": "invoice", "confidence": 0.9, "model_version": "m"},
        "occurred_at": "2026-01-15T10:30:00Z",
    }


def test_failed_event_carries_the_error_instead_of_a_classification() -> None:
    error = {"code": "CLASSIFICATION_FAILED", "message": "x"}
    event = document_event(
        event="document.failed", doc_id="d", owner="o", status="failed", error=error
    )
    assert event["error"] == error
    assert "classification" not in event


def test_each_event_gets_its_own_id() -> None:
    ids = {
        document_event(event="e", doc_id="d", owner="o", status="s")["event_id"] for _ in range(50)
    }
    assert len(ids) == 50


def test_error_descriptions_never_carry_hosts_paths_or_reprs() -> None:
    unavailable = ClassifierUnavailable("UNAVAILABLE: failed to connect to 10.0.0.7:50051")
    assert "10.0.0.7" not in describe_error(unavailable)
    assert describe_error(ClassifierTimeout("DEADLINE_EXCEEDED: x")).startswith(
        "CLASSIFIER_TIMEOUT"
    )
    unexpected = describe_error(OSError(2, "No such file", "/var/lib/secret/file"))
    assert unexpected == "Unexpected error (FileNotFoundError)"
    network = httpx.ConnectError("cannot reach https://user:pw@hooks.example/x")
    assert "hooks.example" not in describe_error(network)


def test_only_hopeless_failures_are_permanent() -> None:
    assert is_permanent(PermanentJobError("missing bytes"))
    assert not is_permanent(ClassifierUnavailable())
    assert not is_permanent(WebhookDeliveryFailed("The webhook answered 500"))


@pytest.mark.parametrize(
    "error",
    [
        ClassifierUnavailable("RESOURCE_EXHAUSTED: busy"),
        ClassifierTimeout("DEADLINE_EXCEEDED: x"),
        WebhookUnavailable("The webhook answered 503"),
        StorageUnavailable("storage endpoint is unreachable"),
        DatabaseUnavailable(),
    ],
    ids=type,
)
def test_a_dependency_s_absence_is_waited_for(error: Exception) -> None:
    assert is_unavailable(error)
    assert not is_permanent(error)


@pytest.mark.parametrize(
    "error",
    [
        ClassifierRejected("INVALID_ARGUMENT: unreadable"),
        ClassifierFailed("INTERNAL: crashed"),
        ClassifierAnswerInvalid("The classifier answered a confidence of 1.7"),
        WebhookDeliveryFailed("The webhook answered 404"),
        RuntimeError("a crash while handling it"),
    ],
    ids=type,
)
def test_the_job_s_own_failures_count_as_attempts(error: Exception) -> None:
    assert not is_unavailable(error)


def test_a_webhook_s_retry_after_is_read_as_seconds_or_a_date() -> None:
    now = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s("Thu, 15 Jan 2026 10:31:00 GMT", now) == 60.0
    assert retry_after_s("Thu, 15 Jan 2026 10:00:00 GMT", now) == 0.0  # past: now
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None
    assert requested_delay_s(WebhookUnavailable("x", retry_after_s=7.0)) == 7.0
    assert requested_delay_s(ClassifierUnavailable()) is None

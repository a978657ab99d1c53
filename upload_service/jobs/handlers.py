"""What each kind of job does: classify a document, notify a webhook, purge an object, clean up.

A handler does its slow work (storage, classifier, HTTP) outside any transaction and returns its
database effects as a function; the worker applies them in the same transaction that records the
job's success, and only while it still holds the job's lease, so a job whose lease was lost
leaves no trace. `failure_effects` gives what a job's final failure does to its document.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from ulid import ULID

from upload_service.classifier.base import Classifier, DocumentToClassify
from upload_service.config import Settings
from upload_service.db.models import Document
from upload_service.errors import ClassifierRejected, UploadServiceError
from upload_service.jobs.queue import ClaimedJob, JobKind, enqueue, utc_now
from upload_service.storage.base import Storage

logger = logging.getLogger(__name__)

Effects = Callable[[AsyncSession], Awaitable[None]]
"""Database writes that commit together with the job's outcome."""

WEBHOOK_TIMEOUT_S = 10.0


class PermanentJobError(Exception):
    """A failure that retrying cannot fix: the job fails at once, whatever attempts remain."""


class WebhookDeliveryFailed(Exception):
    """The webhook answered non-2xx or could not be reached; the queue retries the delivery."""


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """The resources handlers work with, all built by the lifespan (or the worker process)."""

    sessions: async_sessionmaker[AsyncSession]
    storage: Storage
    classifier: Classifier
    http: httpx.AsyncClient
    settings: Settings


Handler = Callable[[HandlerContext, ClaimedJob], Awaitable[Effects | None]]


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the contract writes times."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def describe_error(exc: BaseException) -> str:
    """A one-line account of a failure that is safe to show a client (no path, URL or repr)."""
    if isinstance(exc, UploadServiceError):
        return f"{exc.error_code}: {exc.message}"
    if isinstance(exc, PermanentJobError | WebhookDeliveryFailed):
        return str(exc)
    return f"Unexpected error ({type(exc).__name__})"


def is_permanent(exc: BaseException) -> bool:
    """Whether retrying `exc` is pointless (a document the classifier refuses, missing bytes)."""
    return isinstance(exc, PermanentJobError | ClassifierRejected)


def signature(secret: str, body: bytes) -> str:
    """The `X-Signature` value: `sha256=` and the hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def document_event(
    *,
    event: str,
    doc_id: str,
    owner: str,
    status: str,
    classification: dict[str, Any] | None = None,
    error: dict[str, Any] | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A webhook body; its `event_id` is fixed here, once, so every retry repeats it."""
    body: dict[str, Any] = {
        "event_id": f"evt_{ULID()}",
        "event": event,
        "doc_id": doc_id,
        "owner": owner,
        "status": status,
    }
    if error is not None:
        body["error"] = error
    else:
        body["classification"] = classification
    body["occurred_at"] = iso_utc(occurred_at or utc_now())
    return body


async def enqueue_notification(
    session: AsyncSession,
    settings: Settings,
    body: dict[str, Any],
    *,
    correlation_id: str | None,
) -> None:
    """Queue the delivery of `body` in the caller's transaction, when a webhook is configured."""
    if not settings.notification_url:
        return
    await enqueue(
        session,
        kind=JobKind.NOTIFY,
        doc_id=body["doc_id"],
        owner=body["owner"],
        payload={"event": body},
        correlation_id=correlation_id,
        max_attempts=settings.job_max_attempts,
    )


async def classify(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Classify the job's document: processing, stream its bytes to the classifier, complete."""
    assert job.doc_id is not None
    async with ctx.sessions.begin() as session:
        row = (
            await session.execute(
                update(Document)
                .where(Document.id == job.doc_id)
                .values(status="processing", updated_at=utc_now())
                .returning(
                    Document.owner,
                    Document.filename,
                    Document.content_type,
                    Document.size_bytes,
                    Document.sha256,
                    Document.storage_key,
                )
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
    if row is None:
        logger.info("classify %s: document %s is gone; nothing to do", job.id, job.doc_id)
        return None
    document = DocumentToClassify(
        doc_id=job.doc_id,
        filename=row.filename,
        content_type=row.content_type,
        size_bytes=row.size_bytes,
        sha256=row.sha256,
    )
    try:
        result = await ctx.classifier.classify(document, ctx.storage.read(row.storage_key))
    except FileNotFoundError:
        raise PermanentJobError("The document's bytes are missing from storage") from None
    classification = {
        "label": result.label,
        "confidence": result.confidence,
        "model_version": result.model_version,
    }
    doc_id, owner, correlation_id = job.doc_id, row.owner, job.correlation_id

    async def complete(session: AsyncSession) -> None:
        now = utc_now()
        updated = await session.execute(
            update(Document)
            .where(Document.id == doc_id)
            .values(status="complete", classification=classification, error=None, updated_at=now)
            .returning(Document.id)
            .execution_options(synchronize_session=False)
        )
        if updated.first() is None:
            return  # Deleted while it was being classified: nobody to tell.
        body = document_event(
            event="document.completed",
            doc_id=doc_id,
            owner=owner,
            status="complete",
            classification=classification,
            occurred_at=now,
        )
        await enqueue_notification(session, ctx.settings, body, correlation_id=correlation_id)

    logger.info("classified %s as %s (%.2f)", doc_id, result.label, result.confidence)
    return complete


def classify_failed(ctx: HandlerContext, job: ClaimedJob, message: str) -> Effects:
    """The document of a classify job that ran out of attempts: `failed`, with its error."""
    error = {
        "code": "CLASSIFICATION_FAILED",
        "message": f"Classification failed after {job.attempts} attempt(s): {message}",
    }

    async def fail_document(session: AsyncSession) -> None:
        now = utc_now()
        row = (
            await session.execute(
                update(Document)
                .where(Document.id == job.doc_id)
                .values(status="failed", classification=None, error=error, updated_at=now)
                .returning(Document.owner)
                .execution_options(synchronize_session=False)
            )
        ).one_or_none()
        if row is None or job.doc_id is None:
            return
        body = document_event(
            event="document.failed",
            doc_id=job.doc_id,
            owner=row.owner,
            status="failed",
            error=error,
            occurred_at=now,
        )
        await enqueue_notification(session, ctx.settings, body, correlation_id=job.correlation_id)

    return fail_document


async def notify(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """POST the job's event to the webhook, signed; anything but a 2xx raises, so it retries."""
    url = ctx.settings.notification_url
    if not url:
        logger.warning("notify %s: NOTIFICATION_URL is no longer set; event dropped", job.id)
        return None
    event: dict[str, Any] = job.payload["event"]
    body = json.dumps(event, separators=(",", ":"), ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json", "X-Event-ID": str(event["event_id"])}
    if job.correlation_id:
        headers["X-Correlation-ID"] = job.correlation_id
    if ctx.settings.notification_secret:
        headers["X-Signature"] = signature(ctx.settings.notification_secret, body)
    try:
        response = await ctx.http.post(
            url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
        )
    except httpx.HTTPError as exc:
        # The exception's text may carry the URL (and credentials in it): the class name only.
        raise WebhookDeliveryFailed(
            f"The webhook could not be reached ({type(exc).__name__})"
        ) from None
    if not response.is_success:
        raise WebhookDeliveryFailed(f"The webhook answered {response.status_code}")
    logger.info("notified %s of %s", event["event"], event["doc_id"])
    return None


async def purge(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Delete a deleted document's object from storage (deleting a missing object is fine)."""
    key = job.payload.get("storage_key")
    if not isinstance(key, str) or not key:
        raise PermanentJobError("The purge job names no storage key")
    await ctx.storage.delete(key)
    return None


async def janitor(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Periodic clean-up; for now it only records that it ran (see the module's report)."""
    logger.info("janitor %s ran; nothing to clean up yet", job.id)
    return None


HANDLERS: dict[str, Handler] = {
    JobKind.CLASSIFY: classify,
    JobKind.NOTIFY: notify,
    JobKind.PURGE: purge,
    JobKind.JANITOR: janitor,
}

FAILURE_EFFECTS: dict[str, Callable[[HandlerContext, ClaimedJob, str], Effects]] = {
    JobKind.CLASSIFY: classify_failed,
}

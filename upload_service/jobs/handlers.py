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
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import Table, bindparam, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from ulid import ULID

from upload_service.classifier.base import Classifier, DocumentToClassify
from upload_service.config import Settings
from upload_service.db.models import Base
from upload_service.errors import ClassifierRejected, ClassifierUnavailable, UploadServiceError
from upload_service.jobs.queue import ClaimedJob, JobKind, insert_job, utc_now
from upload_service.storage.base import Storage

logger = logging.getLogger(__name__)

Effects = Callable[[AsyncConnection], Awaitable[None]]
"""Database writes that commit together with the job's outcome."""

WEBHOOK_TIMEOUT_S = 10.0


class PermanentJobError(Exception):
    """A failure that retrying cannot fix: the job fails at once, whatever attempts remain."""


class WebhookDeliveryFailed(Exception):
    """The webhook answered non-2xx or could not be reached; the queue retries the delivery."""


@dataclass(frozen=True, slots=True)
class Subject:
    """The document a classify job works on, as read when the job was claimed."""

    doc_id: str
    owner: str
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """The resources handlers work with, all built by the lifespan (or the worker process)."""

    engine: AsyncEngine
    storage: Storage
    classifier: Classifier
    http: httpx.AsyncClient
    settings: Settings
    subjects: dict[str, Subject | None] = field(default_factory=dict)
    """Documents of claimed classify jobs by job id, read in the claim's transaction."""


Handler = Callable[[HandlerContext, ClaimedJob], Awaitable[Effects | None]]


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the contract writes times."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def describe_error(exc: BaseException) -> str:
    """A one-line account of a failure that is safe to show a client (no path, URL or repr)."""
    if isinstance(exc, ClassifierUnavailable):
        # Its details name hosts and ports of the infrastructure: the class's own words only.
        return f"{exc.error_code}: {ClassifierUnavailable.default_message}"
    if isinstance(exc, UploadServiceError):
        first_line = (exc.message.splitlines() or [""])[0]
        return f"{exc.error_code}: {first_line[:200]}"
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
    conn: AsyncConnection,
    settings: Settings,
    body: dict[str, Any],
    *,
    correlation_id: str | None,
) -> None:
    """Queue the delivery of `body` in the caller's transaction, when a webhook is configured."""
    if not settings.notification_url:
        return
    await insert_job(
        conn,
        kind=JobKind.NOTIFY,
        doc_id=body["doc_id"],
        owner=body["owner"],
        payload={"event": body},
        correlation_id=correlation_id,
        max_attempts=settings.job_max_attempts,
    )


# Built once, on the table: see `queue.py` for why.
DOCUMENTS: Table = Base.metadata.tables["documents"]
_d = DOCUMENTS.c
_START = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)))
    .values(status="processing", updated_at=bindparam("now"))
    .returning(
        _d.id, _d.owner, _d.filename, _d.content_type, _d.size_bytes, _d.sha256, _d.storage_key
    )
)
_COMPLETE = (
    update(DOCUMENTS)
    .where(_d.id == bindparam("doc_id"))
    .values(
        status="complete",
        classification=bindparam("classification"),
        error=None,
        updated_at=bindparam("now"),
    )
    .returning(_d.id)
)
_REQUEUE = (
    update(DOCUMENTS)
    .where(_d.id.in_(bindparam("ids", expanding=True)), _d.status == "processing")
    .values(status="queued", updated_at=bindparam("now"))
)
_FAIL = (
    update(DOCUMENTS)
    .where(_d.id == bindparam("doc_id"))
    .values(
        status="failed", classification=None, error=bindparam("error"), updated_at=bindparam("now")
    )
    .returning(_d.owner)
)


async def start_classifications(
    conn: AsyncConnection, jobs: list[ClaimedJob]
) -> dict[str, Subject | None]:
    """Mark the documents of claimed classify jobs `processing`; their rows by job id."""
    doc_ids = {job.doc_id for job in jobs if job.kind == JobKind.CLASSIFY and job.doc_id}
    if not doc_ids:
        return {}
    rows = await conn.execute(_START, {"ids": sorted(doc_ids), "now": utc_now()})
    found = {
        row.id: Subject(
            doc_id=row.id,
            owner=row.owner,
            filename=row.filename,
            content_type=row.content_type,
            size_bytes=row.size_bytes,
            sha256=row.sha256,
            storage_key=row.storage_key,
        )
        for row in rows
    }
    return {job.id: found.get(job.doc_id) for job in jobs if job.doc_id in doc_ids}


async def prepare_claimed(
    conn: AsyncConnection, jobs: list[ClaimedJob]
) -> dict[str, Subject | None]:
    """Work done in the claim's own transaction, a batch at a time (saves one per job).

    Returns the classify jobs' documents by job id, for `HandlerContext.subjects`.
    """
    return await start_classifications(conn, jobs)


async def documents_requeued(conn: AsyncConnection, jobs: list[ClaimedJob]) -> None:
    """Documents of classify jobs handed back unfinished are `queued` again, not `processing`."""
    doc_ids = sorted({job.doc_id for job in jobs if job.kind == JobKind.CLASSIFY and job.doc_id})
    if doc_ids:
        await conn.execute(_REQUEUE, {"ids": doc_ids, "now": utc_now()})


async def classify(ctx: HandlerContext, job: ClaimedJob) -> Effects | None:
    """Classify the job's document: processing, stream its bytes to the classifier, complete."""
    if job.id in ctx.subjects:
        subject = ctx.subjects.pop(job.id)
    else:
        async with ctx.engine.begin() as conn:
            subject = (await start_classifications(conn, [job])).get(job.id)
    if subject is None:
        logger.info("classify %s: document %s is gone; nothing to do", job.id, job.doc_id)
        return None
    document = DocumentToClassify(
        doc_id=subject.doc_id,
        filename=subject.filename,
        content_type=subject.content_type,
        size_bytes=subject.size_bytes,
        sha256=subject.sha256,
    )
    try:
        result = await ctx.classifier.classify(document, ctx.storage.read(subject.storage_key))
    except FileNotFoundError:
        raise PermanentJobError("The document's bytes are missing from storage") from None
    classification = {
        "label": result.label,
        "confidence": result.confidence,
        "model_version": result.model_version,
    }

    async def complete(conn: AsyncConnection) -> None:
        now = utc_now()
        params = {"doc_id": subject.doc_id, "classification": classification, "now": now}
        if (await conn.execute(_COMPLETE, params)).first() is None:
            return  # Deleted while it was being classified: nobody to tell.
        body = document_event(
            event="document.completed",
            doc_id=subject.doc_id,
            owner=subject.owner,
            status="complete",
            classification=classification,
            occurred_at=now,
        )
        await enqueue_notification(conn, ctx.settings, body, correlation_id=job.correlation_id)

    logger.info("classified %s as %s (%.2f)", subject.doc_id, result.label, result.confidence)
    return complete


def classify_failed(ctx: HandlerContext, job: ClaimedJob, message: str) -> Effects:
    """The document of a classify job that ran out of attempts: `failed`, with its error."""
    error = {
        "code": "CLASSIFICATION_FAILED",
        "message": f"Classification failed after {job.attempts} attempt(s): {message}",
    }

    async def fail_document(conn: AsyncConnection) -> None:
        now = utc_now()
        params = {"doc_id": job.doc_id, "error": error, "now": now}
        row = (await conn.execute(_FAIL, params)).one_or_none()
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
        await enqueue_notification(conn, ctx.settings, body, correlation_id=job.correlation_id)

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

"""The `notify` job: POST a document's event to the webhook, signed, retried until it lands.

A receiver that is unreachable, times out, or answers 5xx or 429 is unavailable: the job waits for
it (`WebhookUnavailable`, honouring `Retry-After`) without spending attempts. Any other non-2xx
answer is the receiver refusing the event, a counted attempt.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncConnection
from ulid import ULID

from upload_service.config import Settings
from upload_service.jobs.handler_context import Effects, HandlerContext
from upload_service.jobs.leases import ClaimedJob
from upload_service.jobs.queue import JobKind, NewJob, insert_jobs, utc_now

logger = logging.getLogger(__name__)

WEBHOOK_TIMEOUT_S = 10.0


class WebhookDeliveryFailed(Exception):
    """The webhook refused the event (a 4xx other than 429): retried as a counted attempt."""


class WebhookUnavailable(WebhookDeliveryFailed):
    """The webhook could not take the event now: the queue waits for it, attempts not counted."""

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """What the receiver asked for in `Retry-After`, in seconds, when it said."""


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now (delta-seconds or an HTTP date); None if unusable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, (moment - (now or utc_now())).total_seconds())


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC with a `Z`, as the contract writes times."""
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


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


@dataclass(frozen=True, slots=True)
class Notification:
    """A webhook body to deliver, and the correlation id its delivery job carries."""

    body: dict[str, Any]
    correlation_id: str | None


async def enqueue_notification(
    conn: AsyncConnection,
    settings: Settings,
    body: dict[str, Any],
    *,
    correlation_id: str | None,
) -> None:
    """Queue the delivery of `body` in the caller's transaction, when a webhook is configured."""
    await enqueue_notifications(conn, settings, [Notification(body, correlation_id)])


async def enqueue_notifications(
    conn: AsyncConnection, settings: Settings, notifications: Sequence[Notification]
) -> None:
    """Queue several deliveries in one statement, in the caller's transaction (if configured)."""
    if not settings.notification_url or not notifications:
        return
    await insert_jobs(
        conn,
        [
            NewJob(
                kind=JobKind.NOTIFY,
                doc_id=notification.body["doc_id"],
                owner=notification.body["owner"],
                payload={"event": notification.body},
                correlation_id=notification.correlation_id,
                max_attempts=settings.job_max_attempts,
            )
            for notification in notifications
        ],
    )


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
        message = f"The webhook could not be reached ({type(exc).__name__})"
        if isinstance(exc, httpx.TransportError) and not isinstance(exc, httpx.UnsupportedProtocol):
            raise WebhookUnavailable(message) from None
        raise WebhookDeliveryFailed(message) from None
    if not response.is_success:
        message = f"The webhook answered {response.status_code}"
        if response.status_code == 429 or response.status_code >= 500:
            wait_s = retry_after_s(response.headers.get("Retry-After"))
            raise WebhookUnavailable(message, retry_after_s=wait_s)
        raise WebhookDeliveryFailed(message)
    logger.info("notified %s of %s", event["event"], event["doc_id"])
    return None

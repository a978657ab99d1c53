"""What each kind of job does, and how a failure is told: the registry the worker dispatches on.

Each kind lives in its own module (`classification`, `notifications`, `purge`, `janitor`);
`FAILURE_EFFECTS` gives what a job's final failure does to its document.
"""

from __future__ import annotations

from collections.abc import Callable

from upload_service.errors import (
    ClassifierRejected,
    ClassifierTimeout,
    ClassifierUnavailable,
    DatabaseUnavailable,
    StorageUnavailable,
    UploadServiceError,
)
from upload_service.jobs.classification import classify, classify_failed
from upload_service.jobs.handler_context import Effects, Handler, HandlerContext, PermanentJobError
from upload_service.jobs.janitor import janitor
from upload_service.jobs.leases import ClaimedJob
from upload_service.jobs.notifications import WebhookDeliveryFailed, WebhookUnavailable, notify
from upload_service.jobs.purge import purge
from upload_service.jobs.queue import JobKind


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


_UNAVAILABLE = (
    ClassifierUnavailable,
    ClassifierTimeout,
    WebhookUnavailable,
    StorageUnavailable,
    DatabaseUnavailable,
)


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` is a dependency's absence rather than the job's own failure.

    The classifier or the webhook receiver unreachable, overloaded or out of time, or storage or
    the database out of reach while the job runs: the job waits for it, within
    `JOB_RETRY_WINDOW_S`, and the attempt does not count.
    """
    return isinstance(exc, _UNAVAILABLE)


def requested_delay_s(exc: BaseException) -> float | None:
    """The wait a dependency asked for (a webhook's `Retry-After`), if it asked."""
    return exc.retry_after_s if isinstance(exc, WebhookUnavailable) else None


HANDLERS: dict[str, Handler] = {
    JobKind.CLASSIFY: classify,
    JobKind.NOTIFY: notify,
    JobKind.PURGE: purge,
    JobKind.JANITOR: janitor,
}

FAILURE_EFFECTS: dict[str, Callable[[HandlerContext, ClaimedJob, str], Effects]] = {
    JobKind.CLASSIFY: classify_failed,
}

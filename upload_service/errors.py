"""The domain error hierarchy: services raise these; `exception_handlers` turns them into HTTP.

This module imports no web framework so that every layer, adapters included, may raise them.
"""

from __future__ import annotations

from typing import Any, ClassVar


class UploadServiceError(Exception):
    """Base of every error a client may see; carries its HTTP status and stable code."""

    status_code: ClassVar[int] = 500
    error_code: ClassVar[str] = "INTERNAL_ERROR"
    default_message: ClassVar[str] = "Internal server error"

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.details = details
        self.headers = headers or {}
        super().__init__(self.message)


class MalformedUpload(UploadServiceError):
    status_code = 400
    error_code = "MALFORMED_UPLOAD"
    default_message = "The upload is not a valid multipart body with one file part"


class Unauthenticated(UploadServiceError):
    status_code = 401
    error_code = "UNAUTHENTICATED"
    default_message = "Authentication required"

    def __init__(self, message: str | None = None, *, token_sent: bool = False) -> None:
        challenge = 'Bearer realm="upload-service"'
        if token_sent:
            challenge += ', error="invalid_token"'
        super().__init__(message, headers={"WWW-Authenticate": challenge})


class Forbidden(UploadServiceError):
    status_code = 403
    error_code = "FORBIDDEN"
    default_message = "The token lacks the required scope"


class NotFound(UploadServiceError):
    status_code = 404
    error_code = "NOT_FOUND"
    default_message = "Not found"


class DocumentNotFound(NotFound):
    error_code = "DOCUMENT_NOT_FOUND"

    def __init__(self, doc_id: str) -> None:
        super().__init__(f"Document {doc_id} not found")


class DocumentContentMissing(DocumentNotFound):
    """The document's row exists but its bytes are gone from storage: nothing to download."""

    def __init__(self, doc_id: str) -> None:
        NotFound.__init__(self, f"The content of document {doc_id} is missing from storage")


class TaskNotFound(NotFound):
    error_code = "TASK_NOT_FOUND"

    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task {task_id} not found")


class MethodNotAllowed(UploadServiceError):
    status_code = 405
    error_code = "METHOD_NOT_ALLOWED"
    default_message = "Method not allowed"


class IdempotencyConflict(UploadServiceError):
    status_code = 409
    error_code = "IDEMPOTENCY_CONFLICT"
    default_message = "The Idempotency-Key was already used with a different file"


class FileTooLarge(UploadServiceError):
    status_code = 413
    error_code = "FILE_TOO_LARGE"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"The file is larger than the limit of {max_bytes} bytes",
            details={"max_bytes": max_bytes},
        )


class PayloadTooLarge(UploadServiceError):
    """A JSON body over `MAX_JSON_BODY_KB`: refused before it is read whole.

    The contract has one code for 413, so a JSON body too large shares `FILE_TOO_LARGE`.
    """

    status_code = 413
    error_code = "FILE_TOO_LARGE"

    def __init__(self, max_bytes: int) -> None:
        super().__init__(
            f"The request body is larger than the limit of {max_bytes} bytes",
            details={"max_bytes": max_bytes},
        )


class UploadTimeout(UploadServiceError):
    """The client stopped sending the body for `UPLOAD_IDLE_TIMEOUT_S`."""

    status_code = 408
    error_code = "UPLOAD_TIMEOUT"
    default_message = "The upload stopped arriving; nothing was kept"


class UnsupportedFileType(UploadServiceError):
    status_code = 422
    error_code = "UNSUPPORTED_FILE_TYPE"

    def __init__(self, message: str, allowed: list[str]) -> None:
        super().__init__(message, details={"allowed": allowed})


class EmptyFile(UploadServiceError):
    status_code = 422
    error_code = "EMPTY_FILE"
    default_message = "The file is empty"


class DirectUploadNotFound(NotFound):
    """A direct upload that is not the caller's, or not at all: 404 either way."""

    def __init__(self, upload_id: str) -> None:
        super().__init__(f"Upload {upload_id} not found")


class DirectUploadGone(UploadServiceError):
    """A direct upload expired, cancelled or refused: its bytes are gone."""

    status_code = 410
    error_code = "UPLOAD_GONE"
    default_message = "The upload expired or was removed"


class DirectUploadComplete(UploadServiceError):
    """A completed direct upload cannot be cancelled: its document is deleted instead."""

    status_code = 409
    error_code = "UPLOAD_COMPLETE"
    default_message = "The upload is complete; delete its document instead"


class DirectUploadBusy(UploadServiceError):
    """Another `complete` of the same direct upload is verifying it right now."""

    status_code = 423
    error_code = "UPLOAD_LOCKED"
    default_message = "The upload is being completed by another request; try again shortly"


class SizeMismatch(UploadServiceError):
    """The stored bytes of a direct upload are not the size that was declared."""

    status_code = 422
    error_code = "SIZE_MISMATCH"
    default_message = "The stored bytes are not the size that was declared"


class UploadIncomplete(SizeMismatch):
    """Nothing, or not every part, was sent yet: the upload stays open for the rest."""

    default_message = "Not every byte of the upload has arrived yet"


class DeclaredChecksumMismatch(UploadServiceError):
    """The stored bytes of a direct upload do not have the sha256 that was declared."""

    status_code = 422
    error_code = "CHECKSUM_MISMATCH"
    default_message = "The stored bytes do not match the declared sha256"


class RequestValidationFailed(UploadServiceError):
    status_code = 422
    error_code = "VALIDATION_ERROR"
    default_message = "Request validation failed"


class RateLimited(UploadServiceError):
    status_code = 429
    error_code = "RATE_LIMITED"
    default_message = "Rate limit exceeded"

    def __init__(self, retry_after_s: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(headers={**(headers or {}), "Retry-After": str(max(1, retry_after_s))})


class TooManyStreams(UploadServiceError):
    """The caller already holds `EVENTS_MAX_STREAMS` open event streams."""

    status_code = 429
    error_code = "TOO_MANY_STREAMS"
    default_message = "Too many open event streams; close one first"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"At most {limit} open event streams per user; close one first",
            headers={"Retry-After": "5"},
        )


class ServiceUnavailable(UploadServiceError):
    status_code = 503
    error_code = "SERVICE_UNAVAILABLE"
    default_message = "A dependency is unavailable; try again shortly"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 5) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after_s)})


class WebPageNotBuilt(ServiceUnavailable):
    """The web page's assets are missing: the API works, the page needs `make web`."""

    def __init__(self) -> None:
        super().__init__(
            "The web page is not built: run `make web` (npm ci and npm run build in web/)",
            retry_after_s=60,
        )


class StorageUnavailable(ServiceUnavailable):
    default_message = "Storage is unavailable; try again shortly"


class DatabaseUnavailable(ServiceUnavailable):
    default_message = "The database is unavailable; try again shortly"


class ServerBusy(ServiceUnavailable):
    """An upload waited `UPLOAD_IDLE_TIMEOUT_S` for buffer memory that others still hold."""

    default_message = "The server is busy with other uploads; try again shortly"


class SchemaNotAtHead(DatabaseUnavailable):
    """The database answers, but its schema is older than this code: it waits for a migration."""

    default_message = "The database schema is not at head: run `upload-service migrate`"


class ClientDisconnected(UploadServiceError):
    """The client went away mid-request; nothing is answered, everything is rolled back."""

    status_code = 400
    error_code = "MALFORMED_UPLOAD"
    default_message = "The client disconnected before the body was complete"


class ClassifierError(UploadServiceError):
    """Base of classifier failures; the job queue retries these."""

    status_code = 503
    error_code = "CLASSIFIER_UNAVAILABLE"
    default_message = "The classifier failed"


class ClassifierUnavailable(ClassifierError):
    default_message = "The classifier is unavailable"


class ClassifierTimeout(ClassifierError):
    error_code = "CLASSIFIER_TIMEOUT"
    default_message = "The classifier did not answer before its deadline"


class ClassifierRejected(ClassifierError):
    status_code = 422
    error_code = "CLASSIFICATION_FAILED"
    default_message = "The classifier refused the document"


class ClassifierFailed(ClassifierError):
    """The classifier was there but failed on this document (crashed, ran out of its time in
    process): retried, and the attempt counts against `JOB_MAX_ATTEMPTS`."""

    status_code = 422
    error_code = "CLASSIFICATION_FAILED"
    default_message = "The classifier failed on the document"


class ClassifierAnswerInvalid(ClassifierFailed):
    """The classifier answered outside the schema (a confidence of 1.7, an empty label): never
    stored."""

    default_message = "The classifier's answer is outside the schema"


class RangeNotSatisfiable(UploadServiceError):
    status_code = 416
    error_code = "RANGE_NOT_SATISFIABLE"
    default_message = "The requested range is not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(headers={"Content-Range": f"bytes */{size}"})


class TusRequestInvalid(UploadServiceError):
    """A tus request whose headers break the protocol (no `Upload-Length`, a bad `Upload-Offset`,
    malformed metadata, an unknown checksum algorithm, a body past `Upload-Length`).

    The contract's 400 code for an upload that cannot be taken as sent.
    """

    status_code = 400
    error_code = "MALFORMED_UPLOAD"
    default_message = "The tus request is malformed"


class UploadNotFound(NotFound):
    error_code = "NOT_FOUND"
    default_message = "Upload not found"


class OffsetMismatch(UploadServiceError):
    status_code = 409
    error_code = "OFFSET_MISMATCH"

    def __init__(self, offset: int) -> None:
        super().__init__(
            f"Upload-Offset does not match the server's offset {offset}",
            details={"offset": offset},
            headers={"Upload-Offset": str(offset)},
        )


class UploadComplete(UploadServiceError):
    """The upload is finished: it takes no more bytes and cannot be terminated."""

    status_code = 409
    error_code = "UPLOAD_COMPLETE"

    def __init__(self, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message, headers=headers)


class UploadGone(UploadServiceError):
    status_code = 410
    error_code = "UPLOAD_GONE"
    default_message = "The upload expired or was terminated"


class UnsupportedTusVersion(UploadServiceError):
    status_code = 412
    error_code = "UNSUPPORTED_TUS_VERSION"
    default_message = "Tus-Resumable must be 1.0.0"

    def __init__(self) -> None:
        super().__init__(headers={"Tus-Version": "1.0.0"})


class UnsupportedMediaType(UploadServiceError):
    status_code = 415
    error_code = "UNSUPPORTED_MEDIA_TYPE"
    default_message = "Content-Type must be application/offset+octet-stream"


class UploadLocked(UploadServiceError):
    status_code = 423
    error_code = "UPLOAD_LOCKED"
    default_message = "Another request is writing to this upload; try again shortly"


class TooManyOpenUploads(UploadServiceError):
    status_code = 429
    error_code = "TOO_MANY_OPEN_UPLOADS"

    def __init__(self, cap: int) -> None:
        super().__init__(
            f"You already hold {cap} unfinished uploads; finish or terminate one first",
            details={"max_open_uploads": cap},
            headers={"Retry-After": "60"},
        )


class TusChecksumMismatch(UploadServiceError):
    """The PATCH body does not match its `Upload-Checksum`: nothing of it was kept."""

    status_code = 460
    error_code = "CHECKSUM_MISMATCH"
    default_message = "The body does not match Upload-Checksum; the offset is unchanged"


def error_body(
    error_code: str,
    message: str,
    request_id: str | None,
    details: dict[str, Any] | None = None,
    errors: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The contract's error envelope as a plain dict (`errors` only for validation failures)."""
    body: dict[str, Any] = {
        "error_code": error_code,
        "message": message,
        "request_id": request_id,
        "details": details,
    }
    if errors is not None:
        body["errors"] = errors
    return body

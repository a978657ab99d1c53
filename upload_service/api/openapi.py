"""The OpenAPI documents: the public one clients generate code from, and the full internal one.

FastAPI builds the paths from the routes; this module then states what every operation shares
(Bearer auth; 401, 429, 500 and 503 in the error envelope; 404 where a path names a resource)
in one place, so a route added later is documented like the others without repeating it.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from upload_service.api.schemas import ErrorBody, ValidationErrorBody
from upload_service.documents import sniff
from upload_service.middleware.early_auth import PUBLIC_PATHS

TITLE = "Upload Service API"
SECURITY_SCHEME = {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
NOT_PUBLIC = ("/internal/", "/health", "/readiness", "/metrics")
# Routes in neither document, not even the internal one: the web page, its assets, the API
# docs' own pages, and the development sign-in. They are no part of the API a client calls.
UNDOCUMENTED = "undocumented"
_REF = "#/components/schemas/{model}"
_PATH_PARAM = re.compile(r"\{[^}]+\}")

DESCRIPTION = """\
Upload documents, follow their classification, and download them again.

## Authentication

Every operation needs `Authorization: Bearer <JWT>`. The token's `sub` is the user that owns the
documents it uploads; another user's document answers 404, never 403. A request without a token
is refused with 401 before its body is read.

## Rate limits

Per user: uploads at `UPLOAD_RATE_LIMIT` (default 100/minute), everything else at
`QUERY_RATE_LIMIT` (default 1000/minute). Responses carry `X-RateLimit-Limit`,
`X-RateLimit-Remaining` and `X-RateLimit-Reset`; over the limit the answer is 429
`RATE_LIMITED` with `Retry-After` in seconds.

## Supported files

PDF (`.pdf`), PNG (`.png`), JPEG (`.jpg`, `.jpeg`) and Word (`.docx`), up to `MAX_FILE_SIZE_MB`
(default 50 MiB). The content must match the extension; the stored `content_type` is what the
bytes are, not what the client claimed.

## Resumable uploads

`/v1/uploads/tus` speaks [tus 1.0.0](https://tus.io/protocols/resumable-upload) (extensions
creation, creation-with-upload, termination, expiration, checksum with sha1 and sha256), so stock
clients (tus-js-client, Uppy, tuspy) work unchanged. Every request carries `Tus-Resumable: 1.0.0`;
`OPTIONS /v1/uploads/tus` needs no token. A finished upload becomes a document exactly as
`upload_document` makes one; HEAD then names it in `Document-Location`.

## Errors

Every error has one shape, `ErrorBody`; request validation failures add the failed fields
(`ValidationErrorBody`). `request_id` equals the `X-Request-ID` response header.
"""


def _error(description: str, model: type[BaseModel] = ErrorBody, **headers: str) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}},
    }
    if headers:
        response["headers"] = {
            name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
            for name, text in headers.items()
        }
    return response


def _content_or_validation(description: str) -> dict[str, Any]:
    """A 422 that is either the content's refusal (`ErrorBody`) or a request validation error."""
    return {
        "description": description,
        "content": {
            "application/json": {
                "schema": {
                    "anyOf": [
                        {"$ref": _REF.format(model="ValidationErrorBody")},
                        {"$ref": _REF.format(model="ErrorBody")},
                    ]
                }
            }
        },
    }


# What any authenticated operation may answer, whatever it does.
COMMON_RESPONSES: dict[str, dict[str, Any]] = {
    "401": _error(
        "Missing or invalid token (`UNAUTHENTICATED`)",
        WWW_Authenticate='Bearer realm="upload-service", with error="invalid_token" when sent',
    ),
    "422": _error("Request validation failed (`VALIDATION_ERROR`)", ValidationErrorBody),
    "429": _error(
        "Rate limit exceeded (`RATE_LIMITED`)", Retry_After="Seconds to wait before retrying"
    ),
    "500": _error("Unexpected error (`INTERNAL_ERROR`); the message is generic"),
    "503": _error(
        "The database or storage is unreachable (`SERVICE_UNAVAILABLE`)",
        Retry_After="Seconds to wait before retrying",
    ),
}
NOT_FOUND = _error("Unknown, or not the caller's (`DOCUMENT_NOT_FOUND`, `TASK_NOT_FOUND`)")
BAD_JSON = _error("The body is not valid JSON")

# The upload's own failures, beyond the common ones.
UPLOAD_RESPONSES: dict[str, dict[str, Any]] = {
    "400": _error(
        "Not valid multipart, no `file` part, more than one file, or the body ended early "
        "(`MALFORMED_UPLOAD`)"
    ),
    "409": _error("The Idempotency-Key was used with a different file (`IDEMPOTENCY_CONFLICT`)"),
    "413": _error("Over `MAX_FILE_SIZE_MB`; `details.max_bytes` has the limit (`FILE_TOO_LARGE`)"),
    "422": _content_or_validation(
        "Type not allowed or content not matching the extension "
        "(`UNSUPPORTED_FILE_TYPE`, `details.allowed`), an empty file (`EMPTY_FILE`), or a bad "
        "header (`VALIDATION_ERROR`)"
    ),
}
# A download answers with the stored type, one of the types an upload may have.
_STORED_BYTES = {
    media_type: {"schema": {"type": "string", "format": "binary"}}
    for media_type in (sniff.PDF, sniff.PNG, sniff.JPEG, sniff.DOCX)
}
DOWNLOAD_RESPONSES: dict[str, dict[str, Any]] = {
    "200": {"description": "The stored bytes, as their detected type", "content": _STORED_BYTES},
    "206": {"description": "One byte range (`Range: bytes=a-b`)", "content": _STORED_BYTES},
}


def _headers(**headers: str) -> dict[str, Any]:
    return {
        name.replace("_", "-"): {"description": text, "schema": {"type": "string"}}
        for name, text in headers.items()
    }


# tus (https://tus.io/protocols/resumable-upload): answers are headers, errors the envelope.
_TUS_VERSION = _error(
    "`Tus-Resumable` missing or not `1.0.0` (`UNSUPPORTED_TUS_VERSION`)",
    Tus_Version="The versions spoken: `1.0.0`",
)
_TUS_NOT_FOUND = _error("Unknown, or not the caller's (`NOT_FOUND`)")
_TUS_GONE = _error("Expired or terminated (`UPLOAD_GONE`)")
_TUS_PROGRESS = _headers(
    Upload_Offset="Bytes received and stored",
    Upload_Expires="RFC 9110 date after which an unfinished upload is removed",
    Document_Location="`/v1/documents/{doc_id}`, once the upload is complete",
)
TUS_CREATE_RESPONSES: dict[str, dict[str, Any]] = {
    "201": {
        "description": "Created; with a body, its bytes appended (`Upload-Offset`)",
        "headers": {
            **_headers(Location="`/v1/uploads/tus/{upload_id}`"),
            **_TUS_PROGRESS,
        },
    },
    "400": _error("No `Upload-Length`, `Upload-Defer-Length`, malformed metadata or checksum"),
    "412": _TUS_VERSION,
    "413": _error("`Upload-Length` over `MAX_FILE_SIZE_MB` (`FILE_TOO_LARGE`)"),
    "422": _content_or_validation(
        "The filename's type is not accepted (`UNSUPPORTED_FILE_TYPE`), an empty file "
        "(`EMPTY_FILE`), or a bad header (`VALIDATION_ERROR`)"
    ),
    "429": _error(
        "Rate limit (`RATE_LIMITED`) or too many unfinished uploads (`TOO_MANY_OPEN_UPLOADS`)",
        Retry_After="Seconds to wait before retrying",
    ),
}
TUS_HEAD_RESPONSES: dict[str, dict[str, Any]] = {
    "200": {
        "description": "How far the upload got (no body)",
        "headers": {
            **_TUS_PROGRESS,
            **_headers(
                Upload_Length="The upload's length",
                Upload_Metadata="`Upload-Metadata` as sent at creation",
                Cache_Control="`no-store`",
            ),
        },
    },
    "404": _TUS_NOT_FOUND,
    "410": _TUS_GONE,
    "412": _TUS_VERSION,
}
TUS_PATCH_RESPONSES: dict[str, dict[str, Any]] = {
    "204": {
        "description": "Appended; complete once the offset reaches the length",
        "headers": _TUS_PROGRESS,
    },
    "400": _error("A body past `Upload-Length`, a bad `Upload-Offset` or `Upload-Checksum`"),
    "404": _TUS_NOT_FOUND,
    "408": _error("The body stopped arriving (`UPLOAD_TIMEOUT`); what arrived is kept"),
    "409": _error(
        "`Upload-Offset` is not the server's (`OFFSET_MISMATCH`) or the upload is "
        "complete (`UPLOAD_COMPLETE`)"
    ),
    "410": _TUS_GONE,
    "412": _TUS_VERSION,
    "415": _error("Not `application/offset+octet-stream` (`UNSUPPORTED_MEDIA_TYPE`)"),
    "422": _content_or_validation(
        "Content not of the filename's type (`UNSUPPORTED_FILE_TYPE`): the upload is "
        "terminated; or a bad header (`VALIDATION_ERROR`)"
    ),
    "423": _error("Another PATCH of this upload is in progress (`UPLOAD_LOCKED`)"),
    "460": _error("The body does not match `Upload-Checksum` (`CHECKSUM_MISMATCH`)"),
}
TUS_DELETE_RESPONSES: dict[str, dict[str, Any]] = {
    "204": {"description": "Terminated: its bytes are removed"},
    "404": _TUS_NOT_FOUND,
    "409": _error("The upload is complete (`UPLOAD_COMPLETE`): delete the document instead"),
    "410": _TUS_GONE,
    "412": _TUS_VERSION,
    "423": _error("A PATCH of this upload is in progress (`UPLOAD_LOCKED`)"),
}


# Direct uploads to S3: the declaration's refusals, and the verdicts of `complete`.
UPLOAD_GONE = _error("Expired, cancelled or refused; its bytes are gone (`UPLOAD_GONE`)")
UPLOAD_COMPLETE = _error("Completed; delete its document instead (`UPLOAD_COMPLETE`)")
DIRECT_NOT_FOUND = _TUS_NOT_FOUND
DIRECT_UPLOAD_RESPONSES: dict[str, dict[str, Any]] = {
    "413": _error("Declared size over `MAX_FILE_SIZE_MB` (`FILE_TOO_LARGE`, `details.max_bytes`)"),
    "422": _content_or_validation(
        "Extension not allowed (`UNSUPPORTED_FILE_TYPE`), size 0 (`EMPTY_FILE`), or a bad field "
        "(`VALIDATION_ERROR`)"
    ),
}
DIRECT_COMPLETE_RESPONSES: dict[str, dict[str, Any]] = {
    "404": DIRECT_NOT_FOUND,
    "410": UPLOAD_GONE,
    "422": _content_or_validation(
        "The stored bytes were refused and deleted: not the declared size (`SIZE_MISMATCH`), "
        "not the filename's type (`UNSUPPORTED_FILE_TYPE`), not the declared sha256 "
        "(`CHECKSUM_MISMATCH`); or not every part has arrived yet (`SIZE_MISMATCH` with "
        "`details.missing_parts`; the upload stays open)"
    ),
    "423": _error("Another `complete` of this upload is verifying it (`UPLOAD_LOCKED`)"),
}
DIRECT_OPEN_RESPONSES: dict[str, dict[str, Any]] = {
    "404": DIRECT_NOT_FOUND,
    "409": UPLOAD_COMPLETE,
    "410": UPLOAD_GONE,
}
# Per operation, what it answers beyond the common responses; these replace FastAPI's.
EXTRA_RESPONSES: dict[str, dict[str, dict[str, Any]]] = {
    "upload_document": UPLOAD_RESPONSES,
    "download_document": DOWNLOAD_RESPONSES,
    "tus_create_upload": TUS_CREATE_RESPONSES,
    "tus_get_upload": TUS_HEAD_RESPONSES,
    "tus_append": TUS_PATCH_RESPONSES,
    "tus_terminate_upload": TUS_DELETE_RESPONSES,
    "create_direct_upload": DIRECT_UPLOAD_RESPONSES,
    "sign_direct_upload_parts": DIRECT_OPEN_RESPONSES,
    "get_direct_upload": {"404": DIRECT_NOT_FOUND, "410": UPLOAD_GONE},
    "complete_direct_upload": DIRECT_COMPLETE_RESPONSES,
    "cancel_direct_upload": DIRECT_OPEN_RESPONSES,
}


def route_operation_id(route: APIRoute) -> str:
    """A route's operationId: its function's name (`get_document`), readable in a client."""
    return route.name


@dataclass(frozen=True)
class _ShownRoute(RouteContext):
    """A route context that is documented even though its route is hidden."""

    @property
    def include_in_schema(self) -> bool:
        return True


def public_routes(routes: Sequence[BaseRoute]) -> list[RouteContext]:
    """The routes a client may call: not internal, not a probe, not hidden."""
    return [
        context
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
        and context.include_in_schema
        and not (context.path or "").startswith(NOT_PUBLIC)
    ]


def all_routes(routes: Sequence[BaseRoute]) -> list[RouteContext]:
    """Every API route, hidden ones included (but not the undocumented ones)."""
    return [
        _ShownRoute(**{f.name: getattr(context, f.name) for f in fields(context)})
        for context in iter_route_contexts(routes)
        if isinstance(context.original_route, APIRoute)
        and UNDOCUMENTED not in context.original_route.tags
    ]


def public_openapi(app: FastAPI) -> dict[str, Any]:
    """The public document, built once per app (what `/openapi.json` serves)."""
    if app.openapi_schema is None:
        app.openapi_schema = build_document(app, public_routes(app.routes))
    return app.openapi_schema


def internal_openapi(app: FastAPI) -> dict[str, Any]:
    """The full document, internal routes and probes included (`openapi --internal`)."""
    document = build_document(app, all_routes(app.routes))
    document["info"]["title"] = f"{TITLE} (internal)"
    # Liveness is a plain Starlette route (see api/health.py), which FastAPI does not document.
    document["paths"]["/health"] = {"get": LIVENESS_OPERATION}
    return document


LIVENESS_OPERATION: dict[str, Any] = {
    "operationId": "health",
    "summary": "Liveness",
    "security": [],
    "responses": {
        "200": {
            "description": "Alive while the process runs",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "status": {"type": "string", "enum": ["alive"]},
                            "timestamp": {"type": "string", "format": "date-time"},
                        },
                        "required": ["status", "timestamp"],
                    },
                    "example": {"status": "alive", "timestamp": "2026-01-15T10:30:00Z"},
                }
            },
        }
    },
}


def install_openapi(app: FastAPI) -> None:
    """Serve the public document at `/openapi.json` (and so in `/docs` and `/redoc`)."""

    def openapi() -> dict[str, Any]:
        return public_openapi(app)

    app.openapi = openapi  # type: ignore[method-assign]


def build_document(app: FastAPI, routes: list[RouteContext]) -> dict[str, Any]:
    """FastAPI's document for `routes`, with the shared security and error responses added."""
    document = get_openapi(
        title=TITLE,
        version=app.version,
        description=DESCRIPTION,
        routes=routes,
        tags=[
            {"name": "documents", "description": "Upload, read, list, download and delete"},
            {"name": "tasks", "description": "Classification tasks"},
            {
                "name": "uploads",
                "description": "Resumable uploads (tus 1.0.0): create, append, resume, terminate",
            },
        ],
    )
    components = document.setdefault("components", {})
    components["securitySchemes"] = {"BearerAuth": SECURITY_SCHEME}
    schemas = components.setdefault("schemas", {})
    schemas.update(_error_schemas())
    for path, methods in document.get("paths", {}).items():
        for operation in methods.values():
            _complete_operation(path, operation)
    # FastAPI's own 422 schemas are replaced by `ValidationErrorBody` on every operation.
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return document


def _error_schemas() -> dict[str, Any]:
    _, top = models_json_schema(
        [(ErrorBody, "serialization"), (ValidationErrorBody, "serialization")],
        ref_template=_REF,
    )
    defs: dict[str, Any] = top["$defs"]
    return defs


def _complete_operation(path: str, operation: dict[str, Any]) -> None:
    if path in PUBLIC_PATHS:
        operation["security"] = []
        return
    operation["security"] = [{"BearerAuth": []}]
    responses: dict[str, Any] = operation.setdefault("responses", {})
    if "422" in responses and _is_fastapi_validation(responses["422"]):
        del responses["422"]
    wanted = dict(COMMON_RESPONSES)
    if _PATH_PARAM.search(path):
        wanted["404"] = NOT_FOUND
    if "application/json" in operation.get("requestBody", {}).get("content", {}):
        wanted["400"] = BAD_JSON
    for status, response in wanted.items():
        if status not in responses:
            responses[status] = copy.deepcopy(response)
    for status, response in EXTRA_RESPONSES.get(operation.get("operationId", ""), {}).items():
        responses[status] = copy.deepcopy(response)
    # Statuses the route documented without a body schema (416, say) still answer the envelope.
    for status, response in responses.items():
        if status.isdigit() and int(status) >= 400 and "content" not in response:
            response["content"] = {
                "application/json": {"schema": {"$ref": _REF.format(model="ErrorBody")}}
            }
    operation["responses"] = dict(sorted(responses.items()))


def _is_fastapi_validation(response: dict[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref", "").endswith("/HTTPValidationError"))

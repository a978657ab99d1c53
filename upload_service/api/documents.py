"""Documents: upload, read, list, download, delete, batch-check."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse

from upload_service.api.json_body import JsonBodyRoute
from upload_service.dependencies import (
    DbReader,
    DbSession,
    QueryCaller,
    SessionFactoryDep,
    SettingsDep,
    StorageDep,
    UploadCaller,
)
from upload_service.documents import service
from upload_service.documents.client_body import ClientBody
from upload_service.documents.doors.multipart import UploadRequest, upload_document
from upload_service.documents.filenames import content_disposition
from upload_service.documents.schemas import (
    BatchCheckIn,
    BatchCheckOut,
    DocumentOut,
    DocumentPage,
    DocumentStatus,
)
from upload_service.errors import MalformedUpload
from upload_service.observability import metrics

router = APIRouter(prefix="/v1/documents", tags=["documents"], route_class=JsonBodyRoute)

UPLOAD_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": "The document: PDF, PNG, JPG or DOCX",
                    }
                },
            }
        }
    },
}

BINARY = {"type": "string", "format": "binary"}

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,255}$"),
]


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise MalformedUpload("Content-Length is not a number")
    return int(raw)


@router.post(
    "",
    status_code=202,
    operation_id="upload_document",
    response_model=DocumentOut,
    openapi_extra={"requestBody": UPLOAD_BODY},
    summary="Upload a document",
)
async def upload(
    request: Request,
    user: UploadCaller,
    sessions: SessionFactoryDep,
    storage: StorageDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    """Stream one file to storage and queue it for classification."""
    result = await upload_document(
        UploadRequest(
            owner=user.sub,
            content_type_header=request.headers.get("content-type", ""),
            content_length=_content_length(request),
            idempotency_key=idempotency_key,
        ),
        ClientBody(request.receive, settings.upload_idle_timeout_s),
        sessions=sessions,
        storage=storage,
        settings=settings,
    )
    headers = {"Location": f"/v1/documents/{result.document.id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    else:
        metrics.record_upload(result.document.size_bytes)
    body = DocumentOut.of(result.document).model_dump(mode="json")
    return JSONResponse(body, status_code=202, headers=headers)


async def valid_cursor(cursor: Annotated[str | None, Query(max_length=200)] = None) -> str | None:
    """The document id an opaque cursor points after; 422 when it is not one of ours."""
    if cursor is None:
        return None
    try:
        return service.decode_cursor(cursor)
    except ValueError:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "Malformed cursor", "type": "value_error"}]
        ) from None


@router.get(
    "",
    operation_id="list_documents",
    summary="List your documents, newest first",
)
async def list_documents(
    reader: DbReader,
    user: QueryCaller,
    after: Annotated[str | None, Depends(valid_cursor)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    status: DocumentStatus | None = None,
) -> DocumentPage:
    """One page of the caller's documents."""
    return await service.list_documents(reader, user.sub, limit=limit, after=after, status=status)


@router.post(
    "/batch-check",
    operation_id="batch_check_documents",
    summary="Check that documents exist",
)
async def batch_check(
    body: BatchCheckIn, reader: DbReader, user: QueryCaller, storage: StorageDep
) -> BatchCheckOut:
    """For each id: yours, and its bytes are in storage."""
    return BatchCheckOut(
        results=await service.check_documents(reader, storage, user.sub, body.doc_ids)
    )


@router.get(
    "/{doc_id}",
    operation_id="get_document",
    summary="Get a document",
)
async def get_document(doc_id: str, reader: DbReader, user: QueryCaller) -> DocumentOut:
    """The document and where its classification stands."""
    return await service.read_document(reader, doc_id, user.sub)


@router.get(
    "/{doc_id}/content",
    operation_id="download_document",
    summary="Download a document's bytes",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        },
        206: {"description": "A single byte range"},
        304: {"description": "Not modified (If-None-Match)"},
        416: {"description": "Range not satisfiable"},
    },
)
async def download(
    doc_id: str,
    reader: DbReader,
    user: QueryCaller,
    storage: StorageDep,
    sessions: SessionFactoryDep,
    settings: SettingsDep,
    range_header: Annotated[str | None, Header(alias="Range")] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
) -> Response:
    """Stream the stored bytes, whole or one range."""
    found = await service.open_download(
        service.Downloads(reader, storage, sessions, settings),
        doc_id,
        user.sub,
        range_header=range_header,
        if_none_match=if_none_match,
    )
    document = found.document
    headers = {
        "ETag": f'"{document.sha256}"',
        "Accept-Ranges": "bytes",
        "X-Content-Type-Options": "nosniff",
        "Content-Disposition": content_disposition(document.filename),
        "Cache-Control": "private, no-cache",
    }
    if found.chunks is None:
        return Response(status_code=304, headers=headers)
    if found.byte_range is None:
        headers["Content-Length"] = str(document.size_bytes)
        status = 200
    else:
        span = found.byte_range
        headers["Content-Length"] = str(span.length)
        headers["Content-Range"] = f"bytes {span.start}-{span.end}/{document.size_bytes}"
        status = 206
    return StreamingResponse(
        found.chunks, status_code=status, media_type=document.content_type, headers=headers
    )


@router.delete(
    "/{doc_id}",
    status_code=204,
    operation_id="delete_document",
    summary="Delete a document",
)
async def delete(doc_id: str, db: DbSession, user: QueryCaller) -> Response:
    """Gone at once; the bytes are purged by a durable job."""
    await service.delete_document(db, doc_id, user.sub)
    return Response(status_code=204)

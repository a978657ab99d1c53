"""Resumable uploads (tus 1.0.0): OPTIONS, creation, HEAD, PATCH and termination.

`Tus-Resumable` is checked (412) and stamped on every answer, and `X-HTTP-Method-Override` is
applied, by `middleware/tus.py` before routing; the rules live in the door's service.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request, Response

from upload_service.db import uploads
from upload_service.db.models import Upload
from upload_service.dependencies import QueryCaller, SettingsDep, TusContextDep, UploadCaller
from upload_service.documents.client_body import ClientBody
from upload_service.documents.doors.tus import service
from upload_service.documents.doors.tus.protocol import (
    CHECKSUM_ALGORITHMS,
    EXTENSIONS,
    OFFSET_STREAM,
    TUS_VERSION,
    http_date,
    is_offset_stream,
)
from upload_service.errors import MalformedUpload, UploadServiceError

PREFIX = "/v1/uploads/tus"
# The headers' shapes, documented but parsed by the door (a bad one is 400, as tus asks, not 422).
_BYTE_COUNT = {"pattern": "^[0-9]{1,19}$"}
_CHECKSUM = {"pattern": "^(sha1|sha256) [A-Za-z0-9+/]+={0,2}$"}


async def tus_resumable_header(
    tus_resumable: Annotated[
        Literal["1.0.0"],
        Header(alias="Tus-Resumable", description="The protocol version: `1.0.0`"),
    ],
) -> None:
    """Documents the header every tus request carries (the middleware enforces it: 412)."""


router = APIRouter(prefix=PREFIX, tags=["uploads"])
# Operations a client calls with a token; OPTIONS (no token, no version) is apart from them.
_TUS = [Depends(tus_resumable_header)]
OFFSET_BODY: dict[str, Any] = {
    "required": False,
    "content": {OFFSET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
}


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    if not raw.isdigit():
        raise MalformedUpload("Content-Length is not a number")
    return int(raw)


def _patch_of(request: Request, offset: str | None, checksum: str | None) -> service.Patch:
    return service.Patch(
        content_type=request.headers.get("content-type"),
        offset=offset,
        content_length=_content_length(request),
        checksum=checksum,
    )


def _progress_headers(upload: Upload) -> dict[str, str]:
    headers = {"Upload-Offset": str(upload.offset)}
    if upload.state == uploads.DONE:
        headers["Document-Location"] = service.document_location(upload)
    else:
        headers["Upload-Expires"] = http_date(upload.expires_at)
    return headers


@router.options("", status_code=204, include_in_schema=False)
async def tus_options(settings: SettingsDep) -> Response:
    """What this server speaks (public: tus clients and people ask before they sign in)."""
    return Response(
        status_code=204,
        headers={
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": EXTENSIONS,
            "Tus-Max-Size": str(settings.max_file_size_bytes),
            "Tus-Checksum-Algorithm": ",".join(CHECKSUM_ALGORITHMS),
        },
    )


@router.post(
    "",
    status_code=201,
    dependencies=_TUS,
    openapi_extra={"requestBody": OFFSET_BODY},
    summary="Create a resumable upload (tus creation, creation-with-upload)",
)
async def tus_create_upload(
    request: Request,
    user: UploadCaller,
    ctx: TusContextDep,
    upload_length: Annotated[
        str | None, Header(alias="Upload-Length", json_schema_extra=_BYTE_COUNT)
    ] = None,
    upload_metadata: Annotated[
        str | None,
        Header(
            alias="Upload-Metadata",
            description="`key base64value` pairs, comma-separated, at most 4 KiB; `filename` "
            "names the document",
        ),
    ] = None,
    upload_defer_length: Annotated[
        str | None, Header(alias="Upload-Defer-Length", description="Not supported: 400")
    ] = None,
    upload_checksum: Annotated[
        str | None, Header(alias="Upload-Checksum", json_schema_extra=_CHECKSUM)
    ] = None,
) -> Response:
    """Create an upload; with an `application/offset+octet-stream` body, append it at once."""
    upload = await service.create(
        ctx,
        service.Creation(
            owner=user.sub,
            length=upload_length,
            defer_length=upload_defer_length,
            metadata=upload_metadata,
        ),
    )
    location = f"{PREFIX}/{upload.id}"
    headers = {"Location": location, "Upload-Expires": http_date(upload.expires_at)}
    if is_offset_stream(request.headers.get("content-type")):
        try:
            upload = await service.append(
                ctx,
                upload.id,
                user.sub,
                _patch_of(request, "0", upload_checksum),
                ClientBody(request.receive, ctx.settings.upload_idle_timeout_s),
            )
        except UploadServiceError as exc:
            # The upload exists even though its first bytes were refused: say where it is.
            exc.headers = {**exc.headers, "Location": location}
            raise
        headers.update(_progress_headers(upload))
    return Response(status_code=201, headers=headers)


@router.head(
    "/{upload_id}",
    status_code=200,
    dependencies=_TUS,
    summary="How far a resumable upload got (tus HEAD)",
)
async def tus_get_upload(upload_id: str, user: QueryCaller, ctx: TusContextDep) -> Response:
    """The upload's offset, length and metadata; its document's location once complete."""
    upload = await service.status(ctx, upload_id, user.sub)
    headers = {
        **_progress_headers(upload),
        "Upload-Length": str(upload.length),
        "Cache-Control": "no-store",
    }
    if upload.upload_metadata:
        headers["Upload-Metadata"] = upload.upload_metadata
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    dependencies=_TUS,
    openapi_extra={"requestBody": {**OFFSET_BODY, "required": True}},
    summary="Append bytes to a resumable upload (tus PATCH)",
)
async def tus_append(
    request: Request,
    upload_id: str,
    user: QueryCaller,
    ctx: TusContextDep,
    upload_offset: Annotated[
        str | None, Header(alias="Upload-Offset", json_schema_extra=_BYTE_COUNT)
    ] = None,
    upload_checksum: Annotated[
        str | None, Header(alias="Upload-Checksum", json_schema_extra=_CHECKSUM)
    ] = None,
) -> Response:
    """Append the body at `Upload-Offset`; the last bytes make the document."""
    upload = await service.append(
        ctx,
        upload_id,
        user.sub,
        _patch_of(request, upload_offset, upload_checksum),
        ClientBody(request.receive, ctx.settings.upload_idle_timeout_s),
    )
    return Response(status_code=204, headers=_progress_headers(upload))


@router.delete(
    "/{upload_id}",
    status_code=204,
    dependencies=_TUS,
    summary="Terminate a resumable upload (tus termination)",
)
async def tus_terminate_upload(upload_id: str, user: QueryCaller, ctx: TusContextDep) -> Response:
    """Remove the upload and its bytes; it answers 410 from then on."""
    await service.terminate(ctx, upload_id, user.sub)
    return Response(status_code=204)

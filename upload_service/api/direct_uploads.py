"""Direct uploads to S3: declare, sign parts, look, complete, cancel (`/v1/uploads/direct`).

Mounted only when the service offers them (`DIRECT_UPLOADS`, S3 storage); elsewhere the paths do
not exist (404 `NOT_FOUND`).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response
from fastapi.responses import JSONResponse

from upload_service.api.json_body import JsonBodyRoute
from upload_service.dependencies import (
    DirectUploadsDep,
    QueryCaller,
    SessionFactoryDep,
    SettingsDep,
    StorageDep,
    UploadCaller,
)
from upload_service.documents.doors.direct import complete as completing
from upload_service.documents.doors.direct import declare as declaring
from upload_service.documents.doors.direct.context import DirectDoor
from upload_service.documents.doors.direct.schemas import (
    CompleteIn,
    DirectUploadIn,
    DirectUploadOut,
    DirectUploadStatusOut,
    PartUrlsIn,
    PartUrlsOut,
)
from upload_service.documents.schemas import DocumentOut
from upload_service.observability import metrics

router = APIRouter(prefix="/v1/uploads/direct", tags=["direct uploads"], route_class=JsonBodyRoute)

UploadId = Annotated[str, Path(max_length=64, examples=["dup_01HN3K8V2NKDQ7HTXJFR9CPWK0"])]


async def get_door(
    sessions: SessionFactoryDep,
    storage: StorageDep,
    direct: DirectUploadsDep,
    settings: SettingsDep,
) -> DirectDoor:
    """What the direct door works with, for this request."""
    return DirectDoor(sessions=sessions, storage=storage, direct=direct, settings=settings)


Door = Annotated[DirectDoor, Depends(get_door)]


@router.post(
    "",
    status_code=201,
    operation_id="create_direct_upload",
    response_model=DirectUploadOut,
    summary="Declare a direct upload to S3",
)
async def create(body: DirectUploadIn, user: UploadCaller, door: Door) -> JSONResponse:
    """A presigned POST (small files) or a multipart upload whose parts are signed on request."""
    declared = await declaring.declare(door, user.sub, body)
    return JSONResponse(
        declared.model_dump(mode="json"),
        status_code=201,
        headers={"Location": f"/v1/uploads/direct/{declared.upload_id}"},
    )


@router.post(
    "/{upload_id}/parts",
    operation_id="sign_direct_upload_parts",
    summary="Sign part URLs of a multipart direct upload",
)
async def sign_parts(
    upload_id: UploadId, body: PartUrlsIn, user: QueryCaller, door: Door
) -> PartUrlsOut:
    """Presigned UploadPart URLs, each with its exact length signed; ask again when expired."""
    return await declaring.sign_parts(door, user.sub, upload_id, body.part_numbers)


@router.get(
    "/{upload_id}",
    operation_id="get_direct_upload",
    summary="Where a direct upload stands",
)
async def get_upload(upload_id: UploadId, user: QueryCaller, door: Door) -> DirectUploadStatusOut:
    """Its state, and the parts S3 already holds (to resume)."""
    return await declaring.describe(door, user.sub, upload_id)


@router.post(
    "/{upload_id}/complete",
    status_code=202,
    operation_id="complete_direct_upload",
    response_model=DocumentOut,
    summary="Verify a direct upload and record its document",
)
async def complete(
    upload_id: UploadId, user: QueryCaller, door: Door, body: CompleteIn | None = None
) -> JSONResponse:
    """Finish, verify (size, type, sha256) and record; refused bytes are deleted (422)."""
    result = await completing.complete(door, user.sub, upload_id, body.parts if body else None)
    if not result.replayed:
        metrics.record_upload(result.document.size_bytes)
    return JSONResponse(
        DocumentOut.of(result.document).model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/documents/{result.document.id}"},
    )


@router.delete(
    "/{upload_id}",
    status_code=204,
    operation_id="cancel_direct_upload",
    summary="Cancel a direct upload",
)
async def cancel(upload_id: UploadId, user: QueryCaller, door: Door) -> Response:
    """The staged bytes and the multipart upload are removed; later requests answer 410."""
    await declaring.cancel(door, user.sub, upload_id)
    return Response(status_code=204)

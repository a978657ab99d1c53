"""Internal routes for operators and other services: need the `internal` scope, not published."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from upload_service.dependencies import DbSession, SettingsDep, require_scope
from upload_service.documents.schemas import DocumentOut
from upload_service.jobs import service
from upload_service.jobs.schemas import TaskOut

router = APIRouter(
    prefix="/internal",
    include_in_schema=False,
    dependencies=[Depends(require_scope("internal"))],
)


@router.post("/documents/{doc_id}/reprocess", status_code=202, operation_id="reprocess_document")
async def reprocess_document(doc_id: str, db: DbSession, settings: SettingsDep) -> TaskOut:
    """Queue a classification of any owner's document, or return the active one."""
    return await service.reprocess(db, doc_id, max_attempts=settings.job_max_attempts)


@router.post("/documents/{doc_id}/reset", operation_id="reset_document")
async def reset_document(doc_id: str, db: DbSession, settings: SettingsDep) -> DocumentOut:
    """Put a document back to `queued`, results cleared, with a classification task."""
    return DocumentOut.of(await service.reset(db, doc_id, max_attempts=settings.job_max_attempts))

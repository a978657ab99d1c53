"""Processing: (re)queue a document's classification, and follow its task."""

from __future__ import annotations

from fastapi import APIRouter, Response

from upload_service.dependencies import DbSession, QueryCaller, SettingsDep
from upload_service.jobs import service
from upload_service.jobs.schemas import TaskOut

router = APIRouter(tags=["tasks"])


@router.post(
    "/v1/documents/{doc_id}/process",
    status_code=202,
    operation_id="process_document",
    summary="Queue a document's classification (again)",
)
async def process_document(
    doc_id: str, db: DbSession, user: QueryCaller, settings: SettingsDep, response: Response
) -> TaskOut:
    """Queue a classification task, or return the one already queued or running."""
    task = await service.request_processing(
        db, doc_id, user.sub, max_attempts=settings.job_max_attempts
    )
    response.headers["Location"] = f"/v1/tasks/{task.task_id}"
    return task


@router.get("/v1/tasks/{task_id}", operation_id="get_task", summary="Get a task")
async def get_task(task_id: str, db: DbSession, user: QueryCaller) -> TaskOut:
    """The caller's task and where it stands."""
    return await service.get_task(db, task_id, user.sub)

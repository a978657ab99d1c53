"""The Tasks API's language: a job as a client sees it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from upload_service.db.models import Job

TaskStatus = Literal["queued", "running", "succeeded", "failed"]

# ISO 8601 in UTC with a `Z`, as the contract writes it.
UtcTimestamp = Annotated[
    datetime,
    PlainSerializer(
        lambda value: value.isoformat(timespec="seconds").replace("+00:00", "Z"),
        return_type=str,
    ),
]


class TaskOut(BaseModel):
    """A background task (a classification, for clients) and where it stands."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "task_id": "task_01HN3K8W4ZQ9V7XRMB2T5E6YJD",
                    "doc_id": "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0",
                    "kind": "classify",
                    "status": "queued",
                    "attempts": 0,
                    "last_error": None,
                    "created_at": "2026-01-15T10:30:00Z",
                    "updated_at": "2026-01-15T10:30:00Z",
                }
            ]
        }
    )

    task_id: str
    doc_id: str | None
    kind: str
    status: TaskStatus
    attempts: int
    last_error: str | None
    created_at: UtcTimestamp
    updated_at: UtcTimestamp

    @classmethod
    def of(cls, job: Job) -> TaskOut:
        """The client's view of a job row."""
        return cls(
            task_id=job.id,
            doc_id=job.doc_id,
            kind=job.kind,
            status=job.status,
            attempts=job.attempts,
            last_error=job.last_error,
            created_at=job.created_at,
            updated_at=job.updated_at,
        )

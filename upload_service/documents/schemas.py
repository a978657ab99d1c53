"""The Documents API's language: what clients send and receive."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer

from upload_service.db.models import Document

DocumentStatus = Literal["queued", "processing", "complete", "failed"]

# ISO 8601 in UTC with a `Z`, as the contract writes it.
UtcTimestamp = Annotated[
    datetime,
    PlainSerializer(
        lambda value: value.isoformat(timespec="seconds").replace("+00:00", "Z"),
        return_type=str,
    ),
]

DOCUMENT_COLUMNS = (
    "id",
    "status",
    "filename",
    "content_type",
    "size_bytes",
    "sha256",
    "storage_key",
    "created_at",
    "updated_at",
    "classification",
    "error",
)
DOC_ID_PATTERN = r"^doc_[0-9A-HJKMNP-TV-Z]{26}$"
EXAMPLE_DOC_ID = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"


class ClassificationOut(BaseModel):
    label: str = Field(examples=["invoice"])
    confidence: float = Field(ge=0, le=1, examples=[0.93])
    model_version: str = Field(examples=["reference-1"])


class DocumentErrorOut(BaseModel):
    code: str = Field(examples=["CLASSIFICATION_FAILED"])
    message: str = Field(examples=["The classifier refused the document"])


class DocumentOut(BaseModel):
    """A stored document and where its classification stands."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "doc_id": EXAMPLE_DOC_ID,
                    "status": "queued",
                    "filename": "invoice_2024_01.pdf",
                    "content_type": "application/pdf",
                    "size_bytes": 524288,
                    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                    "storage_key": f"raw/{EXAMPLE_DOC_ID}.pdf",
                    "created_at": "2026-01-15T10:30:00Z",
                    "updated_at": "2026-01-15T10:30:00Z",
                    "classification": None,
                    "error": None,
                }
            ]
        }
    )

    doc_id: str
    status: DocumentStatus
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    storage_key: str
    created_at: UtcTimestamp
    updated_at: UtcTimestamp
    classification: ClassificationOut | None = None
    error: DocumentErrorOut | None = None

    @classmethod
    def of(cls, document: Document) -> DocumentOut:
        """The client's view of a document row (ORM object)."""
        return cls.of_row({column: getattr(document, column) for column in DOCUMENT_COLUMNS})

    @classmethod
    def of_row(cls, row: Mapping[Any, Any]) -> DocumentOut:
        """The client's view of a document row read with Core (a row mapping)."""
        classification = row["classification"]
        error = row["error"]
        return cls(
            doc_id=row["id"],
            status=row["status"],
            filename=row["filename"],
            content_type=row["content_type"],
            size_bytes=row["size_bytes"],
            sha256=row["sha256"],
            storage_key=row["storage_key"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            classification=ClassificationOut(**classification) if classification else None,
            error=DocumentErrorOut(**error) if error else None,
        )


class DocumentPage(BaseModel):
    """One page of the caller's documents, newest first."""

    items: list[DocumentOut]
    next_cursor: str | None = Field(
        default=None, examples=["ZG9jXzAxSE4zSzhWMk5LRFE3SFRYSkZSOUNQV0sw"]
    )


class BatchCheckIn(BaseModel):
    doc_ids: list[Annotated[str, Field(max_length=64)]] = Field(
        min_length=1, max_length=100, examples=[[EXAMPLE_DOC_ID]]
    )


class BatchCheckOut(BaseModel):
    results: dict[str, bool] = Field(examples=[{EXAMPLE_DOC_ID: True}])

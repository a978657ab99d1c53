"""The direct uploads API's language: what clients send and receive."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from upload_service.documents.schemas import UtcTimestamp

EXAMPLE_UPLOAD_ID = "dup_01HN3K8V2NKDQ7HTXJFR9CPWK0"
EXAMPLE_SHA256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# S3's ceiling on the parts of one multipart upload.
MAX_PARTS = 10_000

DirectUploadState = Literal[
    "pending", "completing", "completed", "rejected", "cancelled", "expired"
]
PartNumber = Annotated[int, Field(ge=1, le=MAX_PARTS)]


class DirectUploadIn(BaseModel):
    """What the client declares before it sends a byte."""

    filename: str = Field(min_length=1, max_length=1024, examples=["scan_2024.pdf"])
    size: int = Field(ge=0, description="Size in bytes", examples=[52428800])
    content_type: str = Field(
        min_length=1, max_length=127, pattern=r"^[\x21-\x7e]+$", examples=["application/pdf"]
    )
    sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="The whole file's sha256 in hex; checked against the stored bytes",
        examples=[EXAMPLE_SHA256],
    )


class PresignedPostOut(BaseModel):
    """POST `fields` and then the file (form field `file`, last) to `url`."""

    url: str = Field(examples=["https://bucket.s3.amazonaws.com/"])
    fields: dict[str, str]


class DirectUploadOut(BaseModel):
    """A declared upload: where its bytes go and until when."""

    upload_id: str = Field(examples=[EXAMPLE_UPLOAD_ID])
    key: str = Field(examples=[f"staging/3f2a…/{EXAMPLE_UPLOAD_ID}"])
    expires_at: UtcTimestamp
    size: int
    part_size: int = Field(examples=[8388608])
    part_count: int = Field(examples=[7])
    method: Literal["post", "multipart"]
    post: PresignedPostOut | None = None


class PartUrlsIn(BaseModel):
    """The parts to sign (again, when earlier URLs expired)."""

    part_numbers: list[PartNumber] = Field(min_length=1, max_length=1000, examples=[[1, 2, 3]])


class PartUrlOut(BaseModel):
    """PUT exactly `size` bytes to `url` (its Content-Length is signed)."""

    part_number: int
    size: int
    url: str


class PartUrlsOut(BaseModel):
    parts: list[PartUrlOut]
    expires_at: UtcTimestamp


class HeldPartOut(BaseModel):
    """A part S3 already holds."""

    part_number: int
    size: int
    etag: str


class DirectUploadStatusOut(BaseModel):
    """Where an upload stands; for an open multipart upload, the parts S3 holds."""

    upload_id: str = Field(examples=[EXAMPLE_UPLOAD_ID])
    state: DirectUploadState
    filename: str
    size: int
    part_size: int
    part_count: int
    method: Literal["post", "multipart"]
    expires_at: UtcTimestamp
    doc_id: str | None = Field(default=None, description="The document, once completed")
    parts: list[HeldPartOut] = Field(default_factory=list)


class CompletedPartIn(BaseModel):
    part_number: PartNumber
    etag: str = Field(min_length=1, max_length=128)


class CompleteIn(BaseModel):
    """Multipart: the parts as the client sent them, checked against what S3 holds."""

    parts: list[CompletedPartIn] | None = Field(default=None, max_length=MAX_PARTS)

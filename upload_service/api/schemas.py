"""The error envelope as the public document describes it (`errors.error_body` builds it)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

EXAMPLE_REQUEST_ID = "01HN3K8V2NKDQ7HTXJFR9CPWK0"


class ErrorBody(BaseModel):
    """Every error response: a stable code, a message for people, and the request id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error_code": "DOCUMENT_NOT_FOUND",
                    "message": "Document doc_01HN3K8V2NKDQ7HTXJFR9CPWK0 not found",
                    "request_id": EXAMPLE_REQUEST_ID,
                    "details": None,
                }
            ]
        }
    )

    error_code: str = Field(
        description="Stable machine-readable code", examples=["DOCUMENT_NOT_FOUND"]
    )
    message: str = Field(description="What went wrong, for people", examples=["Not found"])
    request_id: str | None = Field(
        description="Equals the X-Request-ID response header", examples=[EXAMPLE_REQUEST_ID]
    )
    details: dict[str, Any] | None = Field(
        default=None,
        description="Extra facts, such as `max_bytes` or `allowed`",
        examples=[{"max_bytes": 52428800}],
    )


class FieldError(BaseModel):
    """One field that failed validation."""

    loc: list[str | int] = Field(examples=[["query", "limit"]])
    msg: str = Field(examples=["Input should be less than or equal to 100"])
    type: str = Field(examples=["less_than_equal"])


class ValidationErrorBody(ErrorBody):
    """A request validation failure: the envelope plus the fields that failed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error_code": "VALIDATION_ERROR",
                    "message": "Request validation failed",
                    "request_id": EXAMPLE_REQUEST_ID,
                    "details": None,
                    "errors": [
                        {
                            "loc": ["query", "limit"],
                            "msg": "Input should be less than or equal to 100",
                            "type": "less_than_equal",
                        }
                    ],
                }
            ]
        }
    )

    errors: list[FieldError]


class DevTokenIn(BaseModel):
    """Who to sign in as, in development (`POST /v1/dev/token`)."""

    user: str = Field(
        min_length=1, max_length=255, pattern=r"^[A-Za-z0-9._@-]+$", examples=["alice"]
    )


class DevTokenOut(BaseModel):
    """A development token signed with the development secret."""

    access_token: str
    token_type: str = Field(default="bearer", examples=["bearer"])
    expires_in: int = Field(examples=[43200])

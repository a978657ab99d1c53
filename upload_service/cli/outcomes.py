"""What one file's upload came to, and the service's error read from the contract's envelope."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """One file's result: a document id, or the service's error."""

    path: Path
    doc_id: str | None = None
    status: str | None = None
    error: str | None = None
    interrupted: bool = False


def describe_error(response: httpx.Response) -> str:
    """`CODE: message` from the contract's envelope, or the bare status when there is none."""
    try:
        body = response.json()
        described = f"{body['error_code']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        described = f"HTTP {response.status_code}"
    if retry_after := response.headers.get("Retry-After"):
        described += f" (retry after {retry_after} s)"
    return described

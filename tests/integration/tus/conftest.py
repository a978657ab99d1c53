"""Helpers for the tus tests: headers a tus client sends, and the upload rows as they stand."""

from __future__ import annotations

import base64
import hashlib

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import Document, Job, Upload

TUS = {"Tus-Resumable": "1.0.0"}
OFFSET_STREAM = "application/offset+octet-stream"


def metadata(**pairs: str) -> str:
    """An `Upload-Metadata` value: `key base64(value)` pairs joined by commas."""
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in pairs.items()}
    return ",".join(f"{key} {value}" for key, value in encoded.items())


def checksum(algorithm: str, body: bytes) -> str:
    """An `Upload-Checksum` value for `body`."""
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, body).digest()).decode()}"


async def create_upload(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    length: int,
    filename: str = "report.pdf",
    **extra: str,
) -> str:
    """Create an upload and return its path (the `Location`)."""
    response = await client.post(
        "/v1/uploads/tus",
        headers={
            **headers,
            **TUS,
            "Upload-Length": str(length),
            "Upload-Metadata": metadata(filename=filename, filetype="application/pdf"),
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    location = response.headers["location"]
    assert location.startswith("/v1/uploads/tus/")
    return location


async def patch(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    location: str,
    offset: int,
    body: bytes,
    **extra: str,
) -> httpx.Response:
    """One PATCH of `body` at `offset`."""
    return await client.patch(
        location,
        content=body,
        headers={
            **headers,
            **TUS,
            "Content-Type": OFFSET_STREAM,
            "Upload-Offset": str(offset),
            **extra,
        },
    )


async def head(client: httpx.AsyncClient, headers: dict[str, str], location: str) -> httpx.Response:
    """The upload's HEAD."""
    return await client.head(location, headers={**headers, **TUS})


async def upload_row(engine: AsyncEngine, location: str) -> Upload | None:
    """The upload's row as it stands in the database."""
    upload_id = location.rsplit("/", 1)[1]
    async with engine.connect() as conn:
        row = (await conn.execute(select(Upload.__table__).where(Upload.id == upload_id))).first()
    return None if row is None else Upload(**row._mapping)


async def count(engine: AsyncEngine, model: type[Document] | type[Job] | type[Upload]) -> int:
    """Rows in a table."""
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())

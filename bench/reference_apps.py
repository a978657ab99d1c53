"""Reference servers the upload benchmark measures the service against, in the same run.

- `usual`: FastAPI written the usual way: an `UploadFile` parameter (Starlette spools the body),
  `await file.read()` to check the size, then one `put_object`.
- `bare_disk`: a bare ASGI app that only writes the request body to a file.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from typing import Any

import boto3
from botocore.config import Config
from fastapi import FastAPI, HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

MAX_BYTES = int(os.environ.get("MAX_BYTES", str(300 * 1024 * 1024)))


def _usual() -> FastAPI:
    app = FastAPI()
    s3 = boto3.client(
        "s3",
        endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    bucket = os.environ.get("S3_BUCKET", "bench")

    @app.post("/v1/documents", status_code=202)
    async def upload(file: UploadFile) -> dict[str, Any]:
        data = await file.read()
        if len(data) > MAX_BYTES:
            raise HTTPException(413)
        key = f"raw/{uuid.uuid4().hex}"
        await run_in_threadpool(s3.put_object, Bucket=bucket, Key=key, Body=data)
        return {"key": key, "size": len(data)}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "alive"}

    return app


async def bare_disk(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Write the body to a temporary file, then answer 202."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/health":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})
        return
    directory = os.environ.get("BARE_DIR", tempfile.gettempdir())
    with tempfile.NamedTemporaryFile(dir=directory, delete=False) as out:
        more = True
        while more:
            message = await receive()
            out.write(message.get("body", b""))
            more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


usual = _usual() if os.environ.get("REFERENCE_APP") == "usual" else None

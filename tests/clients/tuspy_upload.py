"""Upload one file with tuspy (`tusclient`), checksum on every PATCH; run by the e2e tests.

    python tests/clients/tuspy_upload.py --endpoint URL --file PATH --token JWT [--chunk-size N]

A process of its own, so the test bounds it with a timeout. Prints JSON lines on stdout like the
Node client: `{"event": "url", "url": …}`, `{"event": "chunk", "offset": …, "total": …}` after
each PATCH, then `{"event": "success", "url": …}` or `{"event": "error", "message": …}` (exit 1).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from tusclient.client import TusClient
from tusclient.exceptions import TusCommunicationError, TusUploadFailed


def emit(**event: Any) -> None:
    print(json.dumps(event), flush=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--file", required=True, type=Path)
    parser.add_argument("--token", required=True)
    parser.add_argument("--chunk-size", type=int, default=1024 * 1024)
    args = parser.parse_args()

    client = TusClient(args.endpoint, headers={"Authorization": f"Bearer {args.token}"})
    uploader = client.uploader(
        str(args.file),
        chunk_size=args.chunk_size,
        metadata={"filename": args.file.name, "filetype": "application/pdf"},
        # tuspy's checksum extension: `Upload-Checksum: sha1 <base64>` on each PATCH.
        upload_checksum=True,
    )
    total = uploader.get_file_size()
    try:
        uploader.set_url(uploader.create_url())
        emit(event="url", url=uploader.url)
        uploader.offset = 0
        while uploader.offset < total:
            uploader.upload_chunk()
            emit(event="chunk", offset=uploader.offset, total=total)
    except (TusCommunicationError, TusUploadFailed) as error:
        emit(
            event="error",
            message=str(error),
            status=error.status_code,
            body=(error.response_content or b"").decode(errors="replace"),
        )
        return 1
    emit(event="success", url=uploader.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`upload-service upload --direct`: send files straight to S3 through the service's presigned
requests (`/v1/uploads/direct`), with progress bars and resume.

The file's sha256 is computed first and declared, so the service checks the stored bytes against
it. A small file goes as one presigned POST; a larger one as parts of the size the service
chose, two in flight, each PUT to its own signed URL (an expired URL is signed again). The
upload's id is kept in a state file beside nothing but the file's identity (path, size, mtime):
run the same command again after a failure and it asks the service which parts S3 holds and
sends only the rest. The Bearer token goes to the service only, never to S3.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import httpx
from rich.progress import Progress, TaskID

from upload_service.cli.resume_store import default_state_dir
from upload_service.cli.uploader import UploadOutcome, describe_error, upload_files

PARTS_IN_FLIGHT = 2
PART_ATTEMPTS = 4  # per part: network errors and 5xx, with a short pause; 403 re-signs
SIGN_BATCH = 500
HASH_SLICE = 1024 * 1024


class DirectUploadFailed(Exception):
    """The service or S3 refused a step; the message is what to show."""


@dataclass(frozen=True, slots=True)
class DirectSender:
    """Sends one file by the direct path; `send` has the shape `upload_files` calls."""

    state_dir: Path
    s3: httpx.Client
    parts_in_flight: int = PARTS_IN_FLIGHT

    def send(self, api: httpx.Client, progress: Progress, path: Path) -> UploadOutcome:
        """Upload `path` straight to S3 and have the service verify and record it."""
        if not path.is_file():
            return UploadOutcome(path, error="not a readable file")
        task = progress.add_task(path.name, total=path.stat().st_size)
        try:
            document = self._send(api, progress, task, path)
        except DirectUploadFailed as exc:
            return UploadOutcome(path, error=str(exc))
        except httpx.HTTPError as exc:
            return UploadOutcome(path, error=f"connection failed: {type(exc).__name__}")
        return UploadOutcome(path, doc_id=document["doc_id"], status=document["status"])

    def _send(
        self, api: httpx.Client, progress: Progress, task: TaskID, path: Path
    ) -> dict[str, Any]:
        state = _StateFile(self.state_dir, path)
        upload = self._resume(api, state)
        if upload is None:
            upload = self._declare(api, path)
            state.save(upload["upload_id"])
        upload_id = upload["upload_id"]
        advance: Callable[[int], None] = lambda n: progress.advance(task, n)  # noqa: E731
        if upload["method"] == "post":
            self._post(upload, path, advance)
        else:
            held = {p["part_number"]: p for p in upload.get("parts", [])}
            advance(sum(p["size"] for p in held.values()))
            self._put_parts(api, upload, path, held, advance)
        completed = api.post(f"/v1/uploads/direct/{upload_id}/complete")
        if completed.status_code != 202:
            if completed.status_code in (410, 422):
                state.forget()  # refused or gone: the next run starts afresh
            raise DirectUploadFailed(describe_error(completed))
        state.forget()
        document: dict[str, Any] = completed.json()
        return document

    def _resume(self, api: httpx.Client, state: _StateFile) -> dict[str, Any] | None:
        """The upload a previous run left open, with the parts S3 holds; None to start anew."""
        upload_id = state.load()
        if upload_id is None:
            return None
        found = api.get(f"/v1/uploads/direct/{upload_id}")
        if found.status_code != 200 or found.json()["state"] not in ("pending", "completing"):
            state.forget()
            return None
        upload: dict[str, Any] = found.json()
        if upload["method"] == "post":
            return None  # A POST cannot resume: it is sent again under a new declaration.
        return upload

    def _declare(self, api: httpx.Client, path: Path) -> dict[str, Any]:
        declared = api.post(
            "/v1/uploads/direct",
            json={
                "filename": path.name,
                "size": path.stat().st_size,
                "content_type": "application/octet-stream",
                "sha256": _sha256_of(path),
            },
        )
        if declared.status_code != 201:
            raise DirectUploadFailed(describe_error(declared))
        upload: dict[str, Any] = declared.json()
        upload["parts"] = []
        return upload

    def _post(self, upload: dict[str, Any], path: Path, advance: Callable[[int], None]) -> None:
        post = upload["post"]
        with path.open("rb") as file:
            sent = self.s3.post(
                post["url"],
                data=post["fields"],
                # It reads like a file, which is all httpx asks of it.
                files={"file": (path.name, cast(BinaryIO, _Counting(file, advance)))},
            )
        if sent.status_code not in (200, 201, 204):
            raise DirectUploadFailed(f"S3 refused the file (HTTP {sent.status_code})")

    def _put_parts(
        self,
        api: httpx.Client,
        upload: dict[str, Any],
        path: Path,
        held: dict[int, dict[str, Any]],
        advance: Callable[[int], None],
    ) -> None:
        upload_id = upload["upload_id"]
        missing = [n for n in range(1, upload["part_count"] + 1) if n not in held]
        for batch in _batches(missing, SIGN_BATCH):
            signed = _sign(api, upload_id, batch)
            with ThreadPoolExecutor(self.parts_in_flight) as pool:
                # Bounded memory: at most `parts_in_flight` parts are read at once.
                list(
                    pool.map(
                        lambda part: self._put_part(api, upload, path, part, advance),
                        signed,
                    )
                )

    def _put_part(
        self,
        api: httpx.Client,
        upload: dict[str, Any],
        path: Path,
        part: dict[str, Any],
        advance: Callable[[int], None],
    ) -> None:
        number, size, url = part["part_number"], part["size"], part["url"]
        with path.open("rb") as file:
            file.seek((number - 1) * upload["part_size"])
            body = file.read(size)
        for attempt in range(PART_ATTEMPTS):
            try:
                sent = self.s3.put(url, content=body)
            except httpx.TransportError:
                time.sleep(0.5 * (attempt + 1))
                continue
            if sent.status_code == 200:
                advance(size)
                return
            if sent.status_code == 403:
                # Expired (or its signature refused): have it signed again.
                [part] = _sign(api, upload["upload_id"], [number])
                url = part["url"]
            elif sent.status_code < 500:
                raise DirectUploadFailed(f"S3 refused part {number} (HTTP {sent.status_code})")
            time.sleep(0.5 * (attempt + 1))
        raise DirectUploadFailed(f"part {number} did not go through in {PART_ATTEMPTS} attempts")


def _sign(api: httpx.Client, upload_id: str, numbers: list[int]) -> list[dict[str, Any]]:
    signed = api.post(f"/v1/uploads/direct/{upload_id}/parts", json={"part_numbers": numbers})
    if signed.status_code != 200:
        raise DirectUploadFailed(describe_error(signed))
    parts: list[dict[str, Any]] = signed.json()["parts"]
    return parts


def _batches(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while piece := file.read(HASH_SLICE):
            digest.update(piece)
    return digest.hexdigest()


class _Counting:
    """A file whose reads advance a progress bar (httpx streams a form's file in reads)."""

    def __init__(self, file: BinaryIO, advance: Callable[[int], None]) -> None:
        self._file = file
        self._advance = advance

    def fileno(self) -> int:
        # httpx sizes the form from it: S3 wants a Content-Length, not a chunked body.
        return self._file.fileno()

    def read(self, size: int = -1) -> bytes:
        piece = self._file.read(size)
        self._advance(len(piece))
        return piece


class _StateFile:
    """The id of the open upload of one file, named by the file's path, size and mtime."""

    def __init__(self, directory: Path, path: Path) -> None:
        stat = path.stat()
        identity = f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}"
        self._path = directory / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.json"

    def load(self) -> str | None:
        try:
            upload_id = json.loads(self._path.read_text())["upload_id"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return upload_id if isinstance(upload_id, str) else None

    def save(self, upload_id: str) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps({"upload_id": upload_id}))

    def forget(self) -> None:
        self._path.unlink(missing_ok=True)


def upload_direct(
    paths: list[Path],
    *,
    url: str,
    token: str,
    state_dir: Path | None = None,
    wait: bool = False,
    wait_timeout_s: float = 300.0,
) -> list[UploadOutcome]:
    """`upload_files` by the direct path: the same progress bars, outcomes and `--wait`."""
    # A client of its own, without the Authorization header: S3 sees only what is signed.
    with httpx.Client(timeout=httpx.Timeout(120.0)) as s3:
        # Beside the tus uploads' store (`resume_store`), in a folder of its own.
        sender = DirectSender((state_dir or default_state_dir()) / "direct", s3)
        return upload_files(
            paths,
            url=url,
            token=token,
            wait=wait,
            wait_timeout_s=wait_timeout_s,
            send=sender.send,
        )

"""`upload-service upload`: stream files from disk to a running service, with progress bars.

Each file is sent as a multipart body built around the open file, read in 1 MiB slices, so a
file of any size costs the client one slice of memory; `Content-Length` is exact, so the server
can refuse an oversized file before it is sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

SLICE = 1024 * 1024
FINAL_STATUSES = frozenset({"complete", "failed"})


@dataclass(frozen=True, slots=True)
class UploadOutcome:
    """One file's result: a document id, or the service's error."""

    path: Path
    doc_id: str | None = None
    status: str | None = None
    error: str | None = None


Sender = Callable[[httpx.Client, Progress, Path], "UploadOutcome"]
"""Sends one file with the service's client and a progress display; says how it went."""


def _quote(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "").replace("\n", "")


def multipart_body(
    path: Path, boundary: str, on_sent: Callable[[int], None] | None = None
) -> tuple[int, Iterator[bytes]]:
    """The exact length of a one-file multipart body, and an iterator that streams it."""
    head = (
        f"--{boundary}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{_quote(path.name)}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = path.stat().st_size

    def stream() -> Iterator[bytes]:
        yield head
        with path.open("rb") as file:
            while piece := file.read(SLICE):
                if on_sent is not None:
                    on_sent(len(piece))
                yield piece
        yield tail

    return len(head) + size + len(tail), stream()


def describe_error(response: httpx.Response) -> str:
    """`CODE: message` from the contract's envelope, or the bare status when there is none."""
    try:
        body = response.json()
        return f"{body['error_code']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


def upload_files(
    paths: list[Path],
    *,
    url: str,
    token: str,
    wait: bool = False,
    wait_timeout_s: float = 300.0,
    console: Console | None = None,
    send: Sender | None = None,
) -> list[UploadOutcome]:
    """Upload each file, showing progress; with `wait`, poll until each is classified.

    `send` uploads one file another way (`direct_client`); by default, `POST /v1/documents`.
    """
    send_one = send or _upload_one
    console = console or Console(stderr=True)
    headers = {"Authorization": f"Bearer {token}"}
    outcomes: list[UploadOutcome] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with (
        httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(60.0)) as client,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        for path in paths:
            outcomes.append(send_one(client, progress, path))
        if wait:
            outcomes = [_wait_for(client, outcome, wait_timeout_s) for outcome in outcomes]
    return outcomes


def _upload_one(client: httpx.Client, progress: Progress, path: Path) -> UploadOutcome:
    if not path.is_file():
        return UploadOutcome(path, error="not a readable file")
    task: TaskID = progress.add_task(path.name, total=path.stat().st_size)
    boundary = uuid.uuid4().hex
    length, body = multipart_body(path, boundary, on_sent=lambda n: progress.advance(task, n))
    try:
        response = client.post(
            "/v1/documents",
            content=body,
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(length),
            },
        )
    except httpx.HTTPError as exc:
        return UploadOutcome(path, error=f"connection failed: {type(exc).__name__}")
    if response.status_code != 202:
        return UploadOutcome(path, error=describe_error(response))
    body_json = response.json()
    return UploadOutcome(path, doc_id=body_json["doc_id"], status=body_json["status"])


def _wait_for(client: httpx.Client, outcome: UploadOutcome, timeout_s: float) -> UploadOutcome:
    if outcome.doc_id is None:
        return outcome
    deadline = time.monotonic() + timeout_s
    delay = 0.25
    status = outcome.status
    while time.monotonic() < deadline:
        response = client.get(f"/v1/documents/{outcome.doc_id}")
        if response.status_code != 200:
            return UploadOutcome(outcome.path, outcome.doc_id, status, describe_error(response))
        status = response.json()["status"]
        if status in FINAL_STATUSES:
            return UploadOutcome(outcome.path, outcome.doc_id, status)
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
    return UploadOutcome(outcome.path, outcome.doc_id, status, "timed out waiting")

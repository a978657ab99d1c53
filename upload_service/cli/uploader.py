"""`upload-service upload`: stream files from disk to a running service, with progress bars.

A file above the tus threshold (or any, with `--tus`) goes over the resumable door: see
`resumable.py`. Any other is sent as a multipart body built around the open file, read in 1 MiB
slices, so a file of any size costs the client one slice of memory; `Content-Length` is exact,
so the server can refuse an oversized file before it is sent.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

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

from upload_service.cli.outcomes import UploadOutcome, describe_error
from upload_service.cli.resumable import ProgressHooks, upload_resumably
from upload_service.cli.resume_store import LocalFile, ResumeStore, default_state_dir
from upload_service.cli.tus_client import DEFAULT_CHUNK_SIZE, TusClient, TusUnavailable

__all__ = ["SLICE", "TusOptions", "UploadOutcome", "describe_error", "upload_files"]

SLICE = 1024 * 1024
FINAL_STATUSES = frozenset({"complete", "failed"})
# Below this a lost connection costs little to start over, and one request is quicker than two.
DEFAULT_TUS_THRESHOLD = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class TusOptions:
    """When to use the resumable door, in what chunks, and where to remember unfinished uploads."""

    mode: Literal["auto", "always", "never"] = "auto"
    threshold: int = DEFAULT_TUS_THRESHOLD
    chunk_size: int = DEFAULT_CHUNK_SIZE
    state_dir: Path | None = None
    subject: str = ""

    def applies_to(self, size: int) -> bool:
        """True when a file of `size` bytes goes over tus (an empty one never: none to resume)."""
        if self.mode == "never" or size == 0:
            return False
        return self.mode == "always" or size > self.threshold


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


def upload_files(
    paths: list[Path],
    *,
    url: str,
    token: str,
    wait: bool = False,
    wait_timeout_s: float = 300.0,
    tus: TusOptions | None = None,
    console: Console | None = None,
    transport: httpx.BaseTransport | None = None,
    send: Sender | None = None,
) -> list[UploadOutcome]:
    """Upload each file, showing progress; with `wait`, poll until each is classified.

    Ctrl-C ends the run: the file being sent is reported interrupted, the rest are not tried;
    while waiting, it ends the waiting only (the documents exist and are reported as they stand).
    `send` uploads one file another way (`direct_client`); by default the file's size chooses
    between tus and `POST /v1/documents`. `transport` replaces the network (tests).
    """
    console = console or Console(stderr=True)
    tus = tus or TusOptions()
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
        httpx.Client(
            base_url=url, headers=headers, timeout=httpx.Timeout(60.0), transport=transport
        ) as client,
        Progress(*columns, console=console, transient=False) as progress,
    ):
        sender = _Sender(client, progress, console, tus)
        for path in paths:
            try:
                if send is None:
                    outcomes.append(sender.upload(path))
                else:
                    outcomes.append(send(client, progress, path))
            except KeyboardInterrupt:
                # A direct upload remembers its parts; tus remembers its upload URL.
                resumable = send is not None or sender.resumable(path)
                outcomes.append(_interrupted(path, resumable=resumable))
                return outcomes
        if wait:
            outcomes = _wait_for_all(client, outcomes, wait_timeout_s)
    return outcomes


def _wait_for_all(
    client: httpx.Client, outcomes: list[UploadOutcome], timeout_s: float
) -> list[UploadOutcome]:
    """Each outcome once its document is classified; Ctrl-C stops the waiting only: the
    documents exist, so each is reported with the status it had (and marked interrupted)."""
    waited: list[UploadOutcome] = []
    for outcome in outcomes:
        try:
            waited.append(_wait_for(client, outcome, timeout_s))
        except KeyboardInterrupt:
            left = outcomes[len(waited) :]
            return waited + [replace(each, interrupted=True) for each in left]
    return waited


def _interrupted(path: Path, *, resumable: bool) -> UploadOutcome:
    hint = "run the same command again to resume" if resumable else "nothing was kept"
    return UploadOutcome(path, error=f"interrupted: {hint}", interrupted=True)


class _Sender:
    """Sends each file through the door its size calls for, with a progress bar of its own."""

    def __init__(
        self, client: httpx.Client, progress: Progress, console: Console, tus: TusOptions
    ) -> None:
        self._client = client
        self._progress = progress
        self._console = console
        self._tus = tus
        self._tus_client = TusClient(client, chunk_size=tus.chunk_size)
        self._store = ResumeStore(tus.state_dir or default_state_dir())
        self._no_tus_here = False  # Learnt from the first creation: the rest go multipart.

    def _over_tus(self, size: int) -> bool:
        return self._tus.applies_to(size) and not self._no_tus_here

    def resumable(self, path: Path) -> bool:
        """True when an interrupted upload of `path` can be resumed by the next run."""
        return path.is_file() and self._over_tus(path.stat().st_size)

    def upload(self, path: Path) -> UploadOutcome:
        """One file's upload, over tus or multipart."""
        if not path.is_file():
            return UploadOutcome(path, error="not a readable file")
        size = path.stat().st_size
        task: TaskID = self._progress.add_task(path.name, total=size)
        if not self._over_tus(size):
            return _upload_multipart(self._client, path, lambda n: self._progress.advance(task, n))
        try:
            return self._upload_resumably(path, size, task)
        except TusUnavailable as exc:
            if self._tus.mode == "always":
                return UploadOutcome(path, error=f"{exc.message}; run without --tus")
            # Auto mode against a deployment from before tus: whole files, as it always took.
            self._console.print(
                f"note: {exc.message}; sending whole files instead",
                soft_wrap=True,  # One line however narrow the terminal.
                markup=False,
                highlight=False,
            )
            self._no_tus_here = True
            return _upload_multipart(self._client, path, lambda n: self._progress.advance(task, n))

    def _upload_resumably(self, path: Path, size: int, task: TaskID) -> UploadOutcome:
        file = LocalFile.of(path, server=str(self._client.base_url), subject=self._tus.subject)

        def on_resume(offset: int) -> None:
            self._console.print(f"{path.name}: resuming from byte {offset} of {size}")
            # Start the bar, and its speed, at the server's offset: those bytes were sent before.
            self._progress.reset(task, completed=offset)

        hooks = ProgressHooks(
            on_offset=lambda offset: self._progress.update(task, completed=offset),
            on_sent=lambda n: self._progress.advance(task, n),
            on_resume=on_resume,
        )
        return upload_resumably(self._client, self._tus_client, self._store, file, hooks)


def _upload_multipart(
    client: httpx.Client, path: Path, on_sent: Callable[[int], None]
) -> UploadOutcome:
    boundary = uuid.uuid4().hex
    length, body = multipart_body(path, boundary, on_sent=on_sent)
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

"""A tus 1.0.0 client for the command line: creation, then PATCHes streamed from the open file.

Each PATCH carries one chunk (`chunk_size` bytes) read from the file in 1 MiB slices, so memory
is one slice whatever the file's size. The server's offset is the only truth: after any failure
the client asks for it (HEAD) and continues from there, retrying what may pass (a lost
connection, a 5xx, 408, 409 `OFFSET_MISMATCH`, 423 `UPLOAD_LOCKED`) with a bounded backoff that
starts again after each chunk that gets through. Everything else the service refused is final.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

import httpx

from upload_service.cli.outcomes import describe_error

TUS_ENDPOINT = "/v1/uploads/tus"
TUS_HEADERS = {"Tus-Resumable": "1.0.0"}
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
SLICE = 1024 * 1024
DEFAULT_CHUNK_SIZE = 8 * 1024 * 1024
# Worth another try after a pause: the connection, a restarting or overloaded server, a PATCH
# still holding the lock, or an offset that moved (the HEAD that follows says where to).
_TRANSIENT = frozenset({408, 409, 423, 460, 500, 502, 503, 504})
# What a creation meets where no tus endpoint is routed (a deployment from before tus).
_NO_TUS = frozenset({404, 405, 501})


class UploadGone(Exception):
    """The server does not hold this upload (any more): unknown, expired or terminated."""


class UploadRefused(Exception):
    """The service refused the upload or kept failing; `final` when the upload itself is dead."""

    def __init__(self, message: str, *, final: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.final = final


class TusUnavailable(UploadRefused):
    """The service has no tus endpoint (an older deployment): creation met 404, 405 or 501."""


class FileChanged(Exception):
    """The file grew shorter than its declared length while it was being sent."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Pauses between consecutive failed attempts; their count bounds the attempts.

    About a minute in all: long enough to ride out a server restarting or a network coming
    back; past that the command ends, and running it again resumes.
    """

    delays_s: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 15.0, 15.0)


@dataclass(frozen=True, slots=True)
class UploadState:
    """What HEAD says: how many bytes the server holds, and the document once it is complete."""

    offset: int
    length: int
    document_location: str | None


def encode_metadata(values: dict[str, str]) -> str:
    """tus `Upload-Metadata`: `key base64(value)` pairs joined by commas."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode()).decode('ascii')}" for key, value in values.items()
    )


def _header_int(response: httpx.Response, name: str) -> int:
    """A count the protocol requires in this answer; a clear refusal when it is not there."""
    try:
        return int(response.headers[name])
    except (KeyError, ValueError):
        raise UploadRefused(f"the service's answer has no valid {name}") from None


def _chunk(
    file: BinaryIO, start: int, length: int, on_sent: Callable[[int], None]
) -> Iterator[bytes]:
    file.seek(start)
    remaining = length
    while remaining:
        piece = file.read(min(SLICE, remaining))
        if not piece:
            raise FileChanged("the file got shorter while it was being sent")
        remaining -= len(piece)
        on_sent(len(piece))
        yield piece


class TusClient:
    """Creation, HEAD and PATCH of tus uploads on one service, over a shared httpx client."""

    def __init__(
        self,
        client: httpx.Client,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        backoff: Backoff | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._client = client
        self._chunk_size = chunk_size
        self._backoff = backoff or Backoff()
        self._sleep = sleep

    def create(self, size: int, metadata: dict[str, str]) -> str:
        """Create an upload of `size` bytes; its absolute URL."""
        headers = {
            **TUS_HEADERS,
            "Upload-Length": str(size),
            "Upload-Metadata": encode_metadata(metadata),
        }
        failures = 0
        while True:
            try:
                response = self._client.post(TUS_ENDPOINT, headers=headers)
            except httpx.TransportError as exc:
                problem = f"connection failed: {type(exc).__name__}"
            else:
                if response.status_code == 201 and "Location" in response.headers:
                    return str(response.url.join(response.headers["Location"]))
                if response.status_code in _NO_TUS:
                    raise TusUnavailable(
                        f"the service offers no resumable (tus) uploads: POST {TUS_ENDPOINT} "
                        f"answered HTTP {response.status_code}"
                    )
                if response.status_code < 500:
                    raise UploadRefused(describe_error(response))
                problem = describe_error(response)
            failures = self._pause_after(failures, problem)

    def state(self, url: str) -> UploadState:
        """HEAD: the server's offset; UploadGone when it does not hold the upload."""
        response = self._client.head(url, headers=TUS_HEADERS)
        if response.status_code in (404, 410):
            raise UploadGone(url)
        if response.status_code in _TRANSIENT:
            raise _Transient(describe_error(response))
        if response.status_code not in (200, 204):
            raise UploadRefused(describe_error(response))
        location = response.headers.get("Document-Location")
        return UploadState(
            _header_int(response, "Upload-Offset"),
            _header_int(response, "Upload-Length"),
            None if location is None else str(location),
        )

    def send(
        self,
        url: str,
        file: BinaryIO,
        size: int,
        *,
        on_offset: Callable[[int], None],
        on_sent: Callable[[int], None],
    ) -> str:
        """PATCH the file from the server's offset to its end; the finished document's location.

        `on_offset` is told each offset the server confirms (the first from HEAD, so a resumed
        upload's progress starts there); `on_sent` each slice handed to the connection.
        """
        offset: int | None = None  # Unknown until the server says: it, not us, knows.
        failures = 0
        while True:
            try:
                if offset is None:
                    state = self.state(url)
                    offset = state.offset
                    on_offset(offset)
                    if state.document_location is not None:
                        return state.document_location
                    if offset >= size:
                        raise _Transient("the service holds every byte but no document yet")
                length = min(self._chunk_size, size - offset)
                response = self._patch(url, file, offset, length, on_sent)
            except httpx.TransportError as exc:
                problem = f"connection failed: {type(exc).__name__}"
            except _Transient as exc:
                problem = str(exc)
            else:
                if response.status_code == 204:
                    offset = _header_int(response, "Upload-Offset")
                    on_offset(offset)
                    failures = 0
                    if (location := response.headers.get("Document-Location")) is not None:
                        return str(location)
                    if offset >= size:
                        offset = None  # Complete, yet no document named: ask where it is.
                    continue
                if response.status_code in (404, 410):
                    raise UploadGone(url)
                if response.status_code not in _TRANSIENT:
                    # A refused type terminates the upload on the server: nothing to resume.
                    raise UploadRefused(describe_error(response), final=response.status_code == 422)
                problem = describe_error(response)
            offset = None
            failures = self._pause_after(failures, problem)

    def _patch(
        self, url: str, file: BinaryIO, offset: int, length: int, on_sent: Callable[[int], None]
    ) -> httpx.Response:
        return self._client.patch(
            url,
            content=_chunk(file, offset, length, on_sent),
            headers={
                **TUS_HEADERS,
                "Content-Type": OFFSET_OCTET_STREAM,
                "Content-Length": str(length),
                "Upload-Offset": str(offset),
            },
        )

    def _pause_after(self, failures: int, problem: str) -> int:
        """Wait before the next attempt, or give up once the backoff is spent."""
        if failures >= len(self._backoff.delays_s):
            raise UploadRefused(f"gave up after {failures + 1} attempts: {problem}")
        self._sleep(self._backoff.delays_s[failures])
        return failures + 1


class _Transient(Exception):
    """A failure worth another attempt after a pause."""

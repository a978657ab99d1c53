"""A small in-memory tus 1.0.0 server behind a fake httpx transport, with failures on demand.

It keeps what a real server keeps (offset, bytes, metadata, the finished document) and records
each request, so tests can say how many bytes each PATCH carried and in what slices.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import httpx

TUS = {"Tus-Resumable": "1.0.0"}


@dataclass
class FakeUpload:
    length: int
    metadata: dict[str, str]
    data: bytearray = field(default_factory=bytearray)
    doc_id: str | None = None
    gone: bool = False


@dataclass
class Patch:
    offset: int
    declared: int
    received: int
    slices: list[int]


def _error(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"error_code": code, "message": f"{code} said the fake", "request_id": "r"}
    return httpx.Response(status, json=body, headers={**TUS, **(headers or {})})


class _Unread(httpx.BaseTransport):
    """Like httpx.MockTransport, but hands the body over unread, slice by slice as it is sent."""

    def __init__(self, server: FakeTusServer) -> None:
        self._server = server

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._server.handle(request)


class FakeTusServer:
    """Serves `/v1/uploads/tus` and `/v1/documents/{id}` from memory."""

    def __init__(self) -> None:
        self.uploads: dict[str, FakeUpload] = {}
        self.patches: list[Patch] = []
        self.requests: list[str] = []
        # Scripted answers to the next PATCHes: a status, or "cut:<n>" to keep n bytes and
        # drop the connection.
        self.next_patch: deque[str] = deque()
        self.next_create: deque[int] = deque()
        self.wrong_sha256 = False
        self.before_request: Callable[[httpx.Request], None] | None = None
        self._ids = itertools.count(1)

    def transport(self) -> httpx.BaseTransport:
        return _Unread(self)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=self.transport(), base_url="http://fake.test")

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        if self.before_request is not None:
            self.before_request(request)
        path = request.url.path
        if path.startswith("/v1/documents/"):
            return self._document(path.rsplit("/", 1)[1])
        if request.headers.get("Tus-Resumable") != "1.0.0":
            return _error(412, "UNSUPPORTED_TUS_VERSION")
        if request.method == "POST" and path == "/v1/uploads/tus":
            return self._create(request)
        upload_id = path.rsplit("/", 1)[1]
        upload = self.uploads.get(upload_id)
        if upload is None:
            return _error(404, "NOT_FOUND")
        if upload.gone:
            return _error(410, "UPLOAD_GONE")
        if request.method == "HEAD":
            headers = {"Upload-Offset": str(len(upload.data)), "Upload-Length": str(upload.length)}
            if upload.doc_id:
                headers["Document-Location"] = f"/v1/documents/{upload.doc_id}"
            return httpx.Response(200, headers={**TUS, **headers})
        if request.method == "DELETE":
            upload.gone = True
            return httpx.Response(204, headers=TUS)
        if request.method == "PATCH":
            return self._patch(request, upload)
        return _error(405, "METHOD_NOT_ALLOWED")

    def _create(self, request: httpx.Request) -> httpx.Response:
        if self.next_create:
            status = self.next_create.popleft()
            return _error(status, "SCRIPTED", {"Retry-After": "7"} if status == 429 else None)
        metadata = {}
        for pair in request.headers.get("Upload-Metadata", "").split(","):
            key, _, value = pair.partition(" ")
            metadata[key] = base64.b64decode(value).decode()
        upload_id = f"u{next(self._ids)}"
        self.uploads[upload_id] = FakeUpload(int(request.headers["Upload-Length"]), metadata)
        # Relative, as the contract allows: the client resolves it.
        return httpx.Response(201, headers={**TUS, "Location": f"/v1/uploads/tus/{upload_id}"})

    def _patch(self, request: httpx.Request, upload: FakeUpload) -> httpx.Response:
        script = self.next_patch.popleft() if self.next_patch else ""
        offset = int(request.headers["Upload-Offset"])
        declared = int(request.headers["Content-Length"])
        if script.isdigit():
            status = int(script)
            code = {409: "OFFSET_MISMATCH", 422: "UNSUPPORTED_FILE_TYPE", 423: "UPLOAD_LOCKED"}
            return _error(status, code.get(status, "SCRIPTED"))
        if offset != len(upload.data):
            return _error(409, "OFFSET_MISMATCH")
        keep = int(script.removeprefix("cut:")) if script.startswith("cut:") else None
        patch = Patch(offset, declared, 0, [])
        self.patches.append(patch)
        assert isinstance(request.stream, Iterable)
        for piece in request.stream:
            patch.slices.append(len(piece))
            if keep is not None and patch.received + len(piece) >= keep:
                upload.data += piece[: keep - patch.received]
                patch.received = keep
                raise httpx.ReadError("connection dropped")
            upload.data += piece
            patch.received += len(piece)
        headers = {**TUS, "Upload-Offset": str(len(upload.data))}
        if len(upload.data) == upload.length:
            upload.doc_id = f"doc_{next(self._ids)}"
            headers["Document-Location"] = f"/v1/documents/{upload.doc_id}"
        return httpx.Response(204, headers=headers)

    def _document(self, doc_id: str) -> httpx.Response:
        for upload in self.uploads.values():
            if upload.doc_id == doc_id:
                digest = hashlib.sha256(bytes(upload.data)).hexdigest()
                sha256 = "0" * 64 if self.wrong_sha256 else digest
                return httpx.Response(
                    200, json={"doc_id": doc_id, "status": "queued", "sha256": sha256}
                )
        return _error(404, "DOCUMENT_NOT_FOUND")

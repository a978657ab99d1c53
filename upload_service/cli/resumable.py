"""One file over tus, resumed across runs: the resume store names the upload, the server its offset.

The entry is written as soon as the upload exists, before its first byte is sent, so whatever
stops the command (Ctrl-C, a lost network, a server restart) the next run of the same command
finds it. It is removed when the document exists, or when the server no longer holds the upload
or refused its content; a changed file's old upload is terminated and a new one begun.
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from upload_service.cli.outcomes import UploadOutcome, describe_error
from upload_service.cli.resume_store import LocalFile, ResumeStore
from upload_service.cli.tus_client import (
    TUS_HEADERS,
    FileChanged,
    TusClient,
    TusUnavailable,
    UploadGone,
    UploadRefused,
)

_HASH_SLICE = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ProgressHooks:
    """How the caller shows progress: an offset the server confirmed, and bytes just sent."""

    on_offset: Callable[[int], None]
    on_sent: Callable[[int], None]
    on_resume: Callable[[int], None]


def upload_resumably(
    client: httpx.Client,
    tus: TusClient,
    store: ResumeStore,
    file: LocalFile,
    hooks: ProgressHooks,
) -> UploadOutcome:
    """Upload `file` over tus, continuing the upload an earlier run left; its outcome."""
    path = file.path
    url = _remembered_upload(client, store, file)
    try:
        with path.open("rb") as stream:
            # At most one fresh start: a remembered upload the server lost is begun anew.
            for _attempt in range(2):
                on_offset = hooks.on_offset
                if url is None:
                    url = tus.create(file.size, _metadata(file))
                    store.remember(file, url)
                else:
                    on_offset = _first_offset_announced(hooks)
                try:
                    location = tus.send(
                        url, stream, file.size, on_offset=on_offset, on_sent=hooks.on_sent
                    )
                    break
                except UploadGone:
                    store.forget(file)
                    url = None
            else:
                return UploadOutcome(path, error="the service lost the upload twice; run again")
    except TusUnavailable:
        raise  # The caller's to decide: another door, or an error.
    except UploadRefused as exc:
        if exc.final:
            store.forget(file)
        return UploadOutcome(path, error=exc.message)
    except FileChanged as exc:
        return UploadOutcome(path, error=str(exc))
    outcome = _document_at(client, file, location)
    if outcome.doc_id is not None:
        store.forget(file)  # Kept otherwise: the next run's HEAD names the document again.
    return outcome


def _first_offset_announced(hooks: ProgressHooks) -> Callable[[int], None]:
    """`on_offset` that also tells `on_resume` the first offset, the one the server held."""
    announced = False

    def on_offset(offset: int) -> None:
        nonlocal announced
        if not announced:
            announced = True
            hooks.on_resume(offset)
        hooks.on_offset(offset)

    return on_offset


def _remembered_upload(client: httpx.Client, store: ResumeStore, file: LocalFile) -> str | None:
    """The URL of this file's unfinished upload, unless the file changed since it began."""
    remembered = store.find(file)
    if remembered is None:
        return None
    if remembered.is_of(file):
        return remembered.upload_url
    # The file changed: its old upload would only hold the user's open-upload allowance.
    with contextlib.suppress(httpx.TransportError):  # The server expires it in any case.
        client.delete(remembered.upload_url, headers=TUS_HEADERS)
    store.forget(file)
    return None


def _metadata(file: LocalFile) -> dict[str, str]:
    filetype = mimetypes.guess_type(file.path.name)[0] or "application/octet-stream"
    return {"filename": file.path.name, "filetype": filetype}


def _document_at(client: httpx.Client, file: LocalFile, location: str) -> UploadOutcome:
    """The finished document, checked against the file: it may have been sent over several runs."""
    try:
        response = client.get(location)
    except httpx.TransportError as exc:
        return UploadOutcome(file.path, error=f"connection failed: {type(exc).__name__}")
    if response.status_code != 200:
        return UploadOutcome(file.path, error=describe_error(response))
    document = response.json()
    doc_id, status = str(document["doc_id"]), str(document["status"])
    stored = document.get("sha256")
    if stored is not None and stored != _sha256_of(file):
        return UploadOutcome(
            file.path, doc_id, status, error="the stored bytes differ from the file (changed?)"
        )
    return UploadOutcome(file.path, doc_id, status)


def _sha256_of(file: LocalFile) -> str:
    digest = hashlib.sha256()
    with file.path.open("rb") as stream:
        while piece := stream.read(_HASH_SLICE):
            digest.update(piece)
    return digest.hexdigest()

"""Support for the job tests: documents written straight to storage and the database, classifiers
that behave in chosen ways, a bounded wait, a running worker, and a real webhook receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from upload_service.classifier.base import Classification, Content, DocumentToClassify, iter_content
from upload_service.config import Settings
from upload_service.db.models import Document, Job, new_doc_id
from upload_service.errors import ClassifierUnavailable
from upload_service.jobs.queue import Backoff, enqueue
from upload_service.jobs.worker import Worker
from upload_service.observability.context import correlation_id_var
from upload_service.storage.base import Storage

T = TypeVar("T")

FAST_BACKOFF = Backoff(base_s=0.05, cap_s=0.2)
EXTENSIONS = {
    "application/pdf": ".pdf",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": ".docx",
}


@dataclass(frozen=True)
class StoredDocument:
    doc_id: str
    task_id: str | None


async def store_document(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    content: bytes,
    *,
    filename: str = "doc.pdf",
    content_type: str = "application/pdf",
    owner: str = "user-a",
    queue: bool = True,
    max_attempts: int = 5,
    correlation_id: str | None = None,
) -> StoredDocument:
    """Write the object, then the row and its classify job in one transaction (as an upload)."""
    doc_id = new_doc_id()
    key = f"raw/{doc_id}{EXTENSIONS.get(content_type, '.bin')}"
    writer = await storage.open_writer(key, content_type)
    await writer.write(content)
    await writer.commit()
    async with sessions.begin() as session:
        session.add(
            Document(
                id=doc_id,
                owner=owner,
                filename=filename,
                content_type=content_type,
                size_bytes=len(content),
                sha256=hashlib.sha256(content).hexdigest(),
                storage_key=key,
                correlation_id=correlation_id,
            )
        )
        task_id = None
        if queue:
            job = await enqueue(
                session,
                kind="classify",
                doc_id=doc_id,
                owner=owner,
                correlation_id=correlation_id,
                max_attempts=max_attempts,
            )
            task_id = job.id
    return StoredDocument(doc_id, task_id)


async def get_document(sessions: async_sessionmaker[AsyncSession], doc_id: str) -> Document:
    """The document row as it is now."""
    async with sessions() as session:
        document = await session.get(Document, doc_id)
        assert document is not None
        return document


async def get_job(sessions: async_sessionmaker[AsyncSession], job_id: str) -> Job:
    """The job row as it is now."""
    async with sessions() as session:
        job = await session.get(Job, job_id)
        assert job is not None
        return job


async def jobs_of(
    sessions: async_sessionmaker[AsyncSession], *, kind: str | None = None
) -> list[Job]:
    """Every job (of `kind`), oldest first."""
    query = select(Job).order_by(Job.created_at, Job.id)
    if kind is not None:
        query = query.where(Job.kind == kind)
    async with sessions() as session:
        return list(await session.scalars(query))


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout_s: float = 10.0,
    interval_s: float = 0.05,
) -> T:
    """Call `probe` until `until(result)` holds; fails with the last result after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = await probe()
        if until(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s; last: {result!r}")
        await asyncio.sleep(interval_s)


async def wait_for_job(
    sessions: async_sessionmaker[AsyncSession],
    job_id: str,
    until: Callable[[Job], bool],
    *,
    timeout_s: float = 10.0,
) -> Job:
    """Wait until the job row satisfies `until`."""
    return await wait_for(lambda: get_job(sessions, job_id), until, timeout_s=timeout_s)


def finished(job: Job) -> bool:
    """Whether the job reached an end state."""
    return job.status in ("succeeded", "failed")


@asynccontextmanager
async def running_worker(
    sessions: async_sessionmaker[AsyncSession],
    storage: Storage,
    classifier: Any,
    settings: Settings,
    *,
    http: httpx.AsyncClient | None = None,
    stop_timeout_s: float = 5.0,
    **options: Any,
) -> AsyncIterator[Worker]:
    """A started worker, stopped on exit."""
    options.setdefault("backoff", FAST_BACKOFF)
    options.setdefault("poll_interval_s", 0.05)
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient())
        worker = Worker(sessions, storage, classifier, http, settings, **options)
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop(stop_timeout_s)


class FixedClassifier:
    """Answers one label at once (reading the content first), and remembers what it saw."""

    def __init__(self, label: str = "invoice", *, read_content: bool = True) -> None:
        self.label = label
        self.read_content = read_content
        self.calls: list[str] = []
        self.correlation_ids: list[str | None] = []

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        self.calls.append(doc.doc_id)
        self.correlation_ids.append(correlation_id_var.get())
        if self.read_content:
            async for _ in iter_content(content):
                pass
        return Classification(self.label, 0.9, "fixed-1")

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


class FlakyClassifier(FixedClassifier):
    """Raises `error` for the first `failures` calls (forever when `failures` is None)."""

    def __init__(
        self,
        failures: int | None,
        error: Callable[[], Exception] = lambda: ClassifierUnavailable(),
        label: str = "invoice",
    ) -> None:
        super().__init__(label)
        self.failures = failures
        self.error = error
        self.call_times: list[float] = []

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        self.call_times.append(time.monotonic())
        if self.failures is None or len(self.call_times) <= self.failures:
            self.calls.append(doc.doc_id)
            raise self.error()
        return await super().classify(doc, content)


class BlockingClassifier(FixedClassifier):
    """Holds every call until `release` is set; `started` is set when the first call arrives."""

    def __init__(self, label: str = "invoice") -> None:
        super().__init__(label)
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        self.started.set()
        await self.release.wait()
        return await super().classify(doc, content)


@dataclass
class ReceivedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    status: int = 200
    """What the receiver answered."""
    at: float = field(default_factory=time.monotonic)


@dataclass
class WebhookReceiver:
    """A real HTTP/1.1 server on 127.0.0.1 that records POSTs and answers `status` (with
    `headers`)."""

    port: int = 0
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    requests: list[ReceivedRequest] = field(default_factory=list)
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        """Where to POST."""
        return f"http://127.0.0.1:{self.port}/hooks/documents"

    async def start(self) -> None:
        """Listen (again) on the same port, or on a free one the first time."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        """Stop listening: connections are refused until `start` again."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    name, value = line.split(":", 1)
                    headers[name.strip().lower()] = value.strip()
            body = await asyncio.wait_for(
                reader.readexactly(int(headers.get("content-length", "0"))), 5
            )
            self.requests.append(ReceivedRequest(method, path, headers, body, self.status))
            extra = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
            status_line = f"HTTP/1.1 {self.status} X\r\n{extra}"
            writer.write(f"{status_line}Content-Length: 0\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            pass
        finally:
            writer.close()

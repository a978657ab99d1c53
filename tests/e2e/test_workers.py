"""Worker processes against real PostgreSQL and a real gRPC classifier: many workers, one effect
per job; a worker killed mid-job has its job finished by another once the lease runs out.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.fixtures.app import TEST_SECRET, server_env
from tests.fixtures.classifier import start_classifier_server
from tests.integration.jobs.support import (
    FixedClassifier,
    finished,
    get_document,
    get_job,
    store_document,
    wait_for,
    wait_for_job,
)
from tests.samples import PDF, TEXTS, pdf_bytes
from upload_service.classifier.base import Classification, Content, DocumentToClassify
from upload_service.classifier.server import serve
from upload_service.db.models import Document, Job
from upload_service.storage.local import LocalStorage

pytestmark = pytest.mark.e2e

Sessions = async_sessionmaker[AsyncSession]


class WorkerProcesses:
    """`python -m upload_service.cli.worker_process` children, each ended by its own pid."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.env = env
        self.cwd = cwd
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, **overrides: str) -> subprocess.Popen[bytes]:
        log = (self.cwd / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "upload_service.cli.worker_process"],
            env={**self.env, **overrides},
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.processes.append(process)
        return process

    def stop_all(self, timeout_s: float = 15.0) -> list[int | None]:
        codes = []
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                codes.append(process.wait(timeout_s))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait(5))
        return codes

    def logs(self) -> str:
        return "\n".join(path.read_text() for path in sorted(self.cwd.glob("worker-*.log")))


@pytest.fixture
def workers(pg_url: str, pg_clean: object, tmp_path: Path) -> Iterator[WorkerProcesses]:
    env = server_env(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "WORKER_CONCURRENCY": "4",
            "JOB_LEASE_S": "10",
            # No janitor job: the tests count exactly the jobs they queue.
            "JANITOR_INTERVAL_S": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    for name in ("NOTIFICATION_URL", "CLASSIFIER_TARGET", "CLASSIFIER_TIMEOUT_S"):
        env.pop(name, None)
    processes = WorkerProcesses(env, tmp_path)
    yield processes
    processes.stop_all()


async def test_three_worker_processes_classify_each_of_500_documents_once(
    pg_sessions: Sessions, workers: WorkerProcesses, tmp_path: Path
) -> None:
    classifier = start_classifier_server(tmp_path / "classifier")
    try:
        storage = LocalStorage(tmp_path / "storage")
        content = pdf_bytes(TEXTS["invoice"][0])
        doc_ids = [
            (await store_document(pg_sessions, storage, content, content_type=PDF)).doc_id
            for _ in range(500)
        ]
        for _ in range(3):
            workers.start(CLASSIFIER_TARGET=classifier.target)

        async def unfinished() -> int:
            async with pg_sessions() as session:
                query = select(func.count()).where(Job.status.not_in(["succeeded", "failed"]))
                return int(await session.scalar(query) or 0)

        await wait_for(unfinished, lambda count: count == 0, timeout_s=45, interval_s=0.2)
        assert workers.stop_all() == [0, 0, 0], workers.logs()

        async with pg_sessions() as session:
            jobs = list(await session.scalars(select(Job)))
            documents = list(await session.scalars(select(Document)))
        assert len(jobs) == 500
        assert {(job.status, job.attempts) for job in jobs} == {("succeeded", 1)}
        assert {document.status for document in documents} == {"complete"}
        assert {
            document.classification["label"] for document in documents if document.classification
        } == {"invoice"}
        counts = classifier.counts()
        assert {doc_id: counts[doc_id] for doc_id in doc_ids} == dict.fromkeys(doc_ids, 1)
    finally:
        classifier.stop()


class HangsOnceClassifier(FixedClassifier):
    """The first call never answers (its caller is about to be killed); later calls do."""

    def __init__(self) -> None:
        super().__init__("contract")
        self.first_call = asyncio.Event()

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        if not self.first_call.is_set():
            self.first_call.set()
            await asyncio.Event().wait()
        return await super().classify(doc, content)


async def test_a_job_of_a_killed_worker_is_finished_by_another_after_its_lease(
    pg_sessions: Sessions, workers: WorkerProcesses, tmp_path: Path
) -> None:
    classifier = HangsOnceClassifier()
    server = await serve(0, classifier=classifier)
    try:
        storage = LocalStorage(tmp_path / "storage")
        item = await store_document(pg_sessions, storage, b"%PDF-1.4 contract", content_type=PDF)
        assert item.task_id is not None
        lease = {"CLASSIFIER_TARGET": server.target, "JOB_LEASE_S": "2"}
        doomed = workers.start(**lease)
        await asyncio.wait_for(classifier.first_call.wait(), 20)
        running = await get_job(pg_sessions, item.task_id)
        assert running.status == "running"
        assert running.locked_by is not None
        assert running.locked_by.split(":")[1] == str(doomed.pid)

        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(5)
        workers.start(**lease)
        job = await wait_for_job(pg_sessions, item.task_id, finished, timeout_s=20)

        assert (job.status, job.attempts) == ("succeeded", 2)
        assert job.last_error is not None
        assert "lease expired" in job.last_error
        document = await get_document(pg_sessions, item.doc_id)
        assert document.status == "complete"
        assert document.classification is not None
        assert document.classification["label"] == "contract"
        assert classifier.calls == [item.doc_id]  # the hung first call never counted
    finally:
        await server.stop(grace=0)


async def test_worker_processes_started_together_schedule_one_janitor_job(
    pg_sessions: Sessions, workers: WorkerProcesses
) -> None:
    # Slots of some thirty years: every process checks the same slot as it starts.
    for _ in range(3):
        workers.start(JANITOR_INTERVAL_S="1000000000")

    async def janitor_jobs() -> list[Job]:
        async with pg_sessions() as session:
            return list(await session.scalars(select(Job).where(Job.kind == "janitor")))

    await wait_for(janitor_jobs, lambda jobs: bool(jobs) and all(map(finished, jobs)), timeout_s=30)
    await asyncio.sleep(2.0)  # any process slower to start has checked by now
    assert workers.stop_all() == [0, 0, 0], workers.logs()

    [job] = await janitor_jobs()
    assert (job.id.startswith("task_janitor_"), job.status, job.attempts) == (True, "succeeded", 1)

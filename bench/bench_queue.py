"""Queue benchmark: how fast worker processes drain a backlog of classify jobs, in one run.

    .venv/bin/python bench/bench_queue.py [--jobs 2000] [--concurrency 8] [--quick]

Everything runs on 127.0.0.1 against a throwaway database on the PostgreSQL at
`TEST_DATABASE_URL` (default: the local server). For each classifier (the reference one over
gRPC, an instant one in process, an instant one over gRPC) and 1 and 2 worker processes, the
backlog is committed at once and drained; the table gives jobs/s and the median and p95 time
from enqueue to `complete`, and checks every job's effects (document `complete` with its
classification, job `succeeded` after one attempt). The reference line is a bare loop of
SQLAlchemy Core statements (claim ten with SKIP LOCKED, then update job and document in one
transaction, 8 tasks) measured in the same run, so the queue's own overhead shows as a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from sqlalchemy import func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.samples import PDF, TEXTS, pdf_bytes  # noqa: E402
from upload_service.classifier.base import (  # noqa: E402
    Classification,
    Content,
    DocumentToClassify,
    iter_content,
)
from upload_service.db.migrate import upgrade_to_head  # noqa: E402
from upload_service.db.models import Document, Job, new_doc_id, new_task_id  # noqa: E402
from upload_service.db.session import create_engine  # noqa: E402
from upload_service.events.outbox import wake_workers  # noqa: E402

PY = sys.executable
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SCENARIO_TIMEOUT_S = 180.0  # every scenario stops by itself
READY_TIMEOUT_S = 30.0
STORAGE_KEY = "raw/bench.pdf"


class InstantClassifier:
    """Answers at once; over gRPC it still receives the whole stream (the client sends it)."""

    def __init__(self, *, read_content: bool) -> None:
        self.read_content = read_content

    async def classify(self, doc: DocumentToClassify, content: Content) -> Classification:
        if self.read_content:
            async for _ in iter_content(content):
                pass
        return Classification("invoice", 1.0, "instant")

    async def check(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


# --- child processes -------------------------------------------------------------------------


async def _worker_main(classifier_kind: str) -> None:
    from upload_service.config import load_settings
    from upload_service.jobs.worker import Worker
    from upload_service.lifespan import open_resources

    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_resources(settings) as res:
        assert res.sessions
        assert res.storage
        assert res.http
        assert res.classifier
        classifier = (
            InstantClassifier(read_content=False)
            if classifier_kind == "instant"
            else res.classifier
        )
        # Woken by NOTIFY as in production (polling only as the slow fallback).
        worker = Worker(
            res.sessions, res.storage, classifier, res.http, settings, wakeups=res.wakeups
        )
        await worker.start()
        print("ready", flush=True)
        await stop.wait()
        await worker.stop(10)


async def _instant_server_main(port: int) -> None:
    from upload_service.classifier.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    running = await serve(port, classifier=InstantClassifier(read_content=True))
    print("ready", flush=True)
    await stop.wait()
    await running.stop(grace=1)


class Child:
    """A child process of this benchmark that prints `ready`; ended by its own pid."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        self.process = subprocess.Popen(
            argv, env=env, cwd=log.parent, stdout=self._out, stderr=subprocess.STDOUT
        )

    def wait_ready(self, marker: str = "ready") -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.log.name} exited:\n{self.log.read_text()[-2000:]}")
            if marker in self.log.read_text(errors="replace"):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.log.name} not ready in {READY_TIMEOUT_S}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._out.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the parent --------------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    workers: int
    jobs_per_s: float
    median_s: float
    p95_s: float


async def _admin(url: str, sql: str) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password, database=u.database
    )
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def _reset(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text("TRUNCATE idempotency_keys, jobs, documents, document_events CASCADE")
        )
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE jobs, documents"))


async def _enqueue_backlog(engine: AsyncEngine, count: int, size: int) -> datetime:
    """Commit `count` documents and their classify jobs at once; returns the commit time."""
    now = datetime.now(UTC)
    documents, jobs = [], []
    for _ in range(count):
        doc_id = new_doc_id()
        documents.append(
            {
                "id": doc_id,
                "owner": "bench",
                "status": "queued",
                "filename": "invoice.pdf",
                "content_type": PDF,
                "size_bytes": size,
                "sha256": "",
                "storage_key": STORAGE_KEY,
                "created_at": now,
                "updated_at": now,
            }
        )
        jobs.append(
            {
                "id": new_task_id(),
                "kind": "classify",
                "doc_id": doc_id,
                "owner": "bench",
                "payload": {},
                "status": "queued",
                "attempts": 0,
                "max_attempts": 5,
                "run_at": now,
                "created_at": now,
                "updated_at": now,
            }
        )
    async with engine.begin() as conn:
        await conn.execute(insert(Document), documents)
        await conn.execute(insert(Job), jobs)
        await wake_workers(conn)  # As every enqueue does: NOTIFY at commit.
    # All jobs become visible to the workers at this commit: that is their enqueue time.
    committed = datetime.now(UTC)
    return committed


async def _drain_and_measure(
    engine: AsyncEngine, name: str, workers: int, count: int, enqueued: datetime, label: str
) -> Result:
    deadline = time.monotonic() + SCENARIO_TIMEOUT_S
    while True:
        async with engine.connect() as conn:
            left = await conn.scalar(
                select(func.count()).where(Job.status.not_in(["succeeded", "failed"]))
            )
        if left == 0:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {left} jobs left after {SCENARIO_TIMEOUT_S}s")
        await asyncio.sleep(0.02)
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(Document.status, Document.classification, Document.updated_at)
            )
        ).all()
        outcomes = (
            await conn.execute(
                select(Job.status, Job.attempts, func.count()).group_by(Job.status, Job.attempts)
            )
        ).all()
    # Every job's effects must be committed: or the figure means nothing.
    assert len(rows) == count, f"{name}: {len(rows)} documents"
    assert {row.status for row in rows} == {"complete"}, f"{name}: {outcomes}"
    assert all(row.classification and row.classification["label"] == label for row in rows)
    assert [tuple(o) for o in outcomes] == [("succeeded", 1, count)], f"{name}: {outcomes}"
    latencies = sorted((row.updated_at - enqueued).total_seconds() for row in rows)
    elapsed = latencies[-1]
    return Result(
        name=name,
        workers=workers,
        jobs_per_s=count / elapsed,
        median_s=statistics.median(latencies),
        p95_s=latencies[int(0.95 * (len(latencies) - 1))],
    )


async def _bare_loop(engine: AsyncEngine, count: int, size: int) -> Result:
    """The reference: claim ten with SKIP LOCKED, then update job and document, 8 tasks."""
    jobs, docs = Job.__table__, Document.__table__
    enqueued = await _enqueue_backlog(engine, count, size)

    async def drain() -> None:
        for _ in range(count):  # bounded: never more claims than jobs
            async with engine.begin() as conn:
                rows = (
                    await conn.execute(
                        select(jobs.c.id, jobs.c.doc_id)
                        .where(jobs.c.status == "queued")
                        .order_by(jobs.c.run_at)
                        .limit(10)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                if not rows:
                    return
                await conn.execute(
                    update(jobs)
                    .where(jobs.c.id.in_([row.id for row in rows]))
                    .values(status="running", attempts=jobs.c.attempts + 1)
                )
            for row in rows:
                now = datetime.now(UTC)
                async with engine.begin() as conn:
                    await conn.execute(
                        update(jobs)
                        .where(jobs.c.id == row.id)
                        .values(status="succeeded", updated_at=now)
                    )
                    await conn.execute(
                        update(docs)
                        .where(docs.c.id == row.doc_id)
                        .values(
                            status="complete",
                            classification={
                                "label": "invoice",
                                "confidence": 1.0,
                                "model_version": "bare",
                            },
                            updated_at=now,
                        )
                    )

    await asyncio.wait_for(asyncio.gather(*(drain() for _ in range(8))), SCENARIO_TIMEOUT_S)
    return await _drain_and_measure(
        engine, "bare Core loop (reference)", 1, count, enqueued, "invoice"
    )


async def _scenario(
    engine: AsyncEngine,
    env: dict[str, str],
    workdir: Path,
    *,
    name: str,
    classifier: str,
    target: str | None,
    workers: int,
    count: int,
    size: int,
    label: str,
) -> Result:
    await _reset(engine)
    worker_env = dict(env)
    if target:
        worker_env["CLASSIFIER_TARGET"] = target
    children = [
        Child(
            [PY, str(Path(__file__).resolve()), "worker", "--classifier", classifier],
            worker_env,
            workdir / f"worker-{name.replace(' ', '-')}-{workers}-{n}.log",
        )
        for n in range(workers)
    ]
    try:
        for child in children:
            child.wait_ready()
        enqueued = await _enqueue_backlog(engine, count, size)
        return await _drain_and_measure(engine, name, workers, count, enqueued, label)
    finally:
        for child in children:
            child.stop()


async def _main(args: argparse.Namespace) -> None:
    server_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)
    name = f"bench_queue_{uuid.uuid4().hex[:10]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-queue-"))
    engine = create_engine(url)
    servers: list[Child] = []
    try:
        await asyncio.to_thread(upgrade_to_head, url)
        content = pdf_bytes(TEXTS["invoice"][0])
        storage = workdir / "storage"
        (storage / "raw").mkdir(parents=True)
        (storage / STORAGE_KEY).write_bytes(content)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CLASSIFIER_"))},
            "ENVIRONMENT": "test",
            "DATABASE_URL": url,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(storage),
            "JWT_SECRET": "bench-secret-0123456789abcdef0123456789",
            "WORKER_CONCURRENCY": str(args.concurrency),
            # No janitor job: the table holds exactly the jobs measured.
            "JANITOR_INTERVAL_S": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        env.pop("NOTIFICATION_URL", None)

        reference_port, instant_port = free_port(), free_port()
        servers.append(
            Child(
                [PY, "-m", "upload_service.classifier.server", "--port", str(reference_port)],
                env,
                workdir / "classifier-reference.log",
            )
        )
        servers[-1].wait_ready("listening")
        servers.append(
            Child(
                [PY, str(Path(__file__).resolve()), "instant-server", "--port", str(instant_port)],
                env,
                workdir / "classifier-instant.log",
            )
        )
        servers[-1].wait_ready()

        count = args.jobs
        results = []
        await _reset(engine)
        results.append(await _bare_loop(engine, count, len(content)))
        plan = [
            ("reference over gRPC", "configured", f"127.0.0.1:{reference_port}", "invoice"),
            ("instant in process", "instant", None, "invoice"),
            ("instant over gRPC", "configured", f"127.0.0.1:{instant_port}", "invoice"),
        ]
        for scenario, classifier, target, label in plan:
            for workers in (1, 2):
                results.append(
                    await _scenario(
                        engine,
                        env,
                        workdir,
                        name=scenario,
                        classifier=classifier,
                        target=target,
                        workers=workers,
                        count=count,
                        size=len(content),
                        label=label,
                    )
                )
        _print(results, count, args.concurrency)
    finally:
        for server in servers:
            server.stop()
        await engine.dispose()
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _print(results: list[Result], count: int, concurrency: int) -> None:
    reference = results[0].jobs_per_s
    print(
        f"\nqueue drain: {count} classify jobs, WORKER_CONCURRENCY={concurrency}, "
        f"PostgreSQL on loopback, {os.cpu_count()} CPUs"
    )
    print(f"{'scenario':30} {'procs':>5} {'jobs/s':>8} {'vs bare':>8} {'median':>8} {'p95':>8}")
    for r in results:
        print(
            f"{r.name:30} {r.workers:5d} {r.jobs_per_s:8.0f} {r.jobs_per_s / reference:8.2f}"
            f" {r.median_s:7.2f}s {r.p95_s:7.2f}s"
        )
    print("goals: instant in process >= 1000 jobs/s; instant over gRPC >= 500 jobs/s")
    print("median/p95: enqueue (backlog commit) to document `complete`; all jobs queued at once")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="mode")
    worker = sub.add_parser("worker", help="(internal) one worker process")
    worker.add_argument("--classifier", choices=["instant", "configured"], required=True)
    server = sub.add_parser("instant-server", help="(internal) the instant gRPC classifier")
    server.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200 jobs, for a smoke run")
    args = parser.parse_args()
    if args.mode == "worker":
        asyncio.run(_worker_main(args.classifier))
    elif args.mode == "instant-server":
        asyncio.run(_instant_server_main(args.port))
    else:
        if args.quick:
            args.jobs = 200
        asyncio.run(_main(args))


if __name__ == "__main__":
    main()

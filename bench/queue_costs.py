"""What a classify job costs: statements sent, worker CPU and PostgreSQL CPU per job.

    .venv/bin/python bench/queue_costs.py [--tree PATH] [--jobs 1000] [--workers 1] [--no-count]

Drains a backlog of classify jobs of one owner with the instant classifier in process (as
bench_queue's "instant in process"), run by the worker processes of the checkout at `--tree`
(this one by default): two versions of the code compare in one session when this script runs
against each in turn (`git worktree add` the other). Statements (`BEGIN` and `COMMIT` included)
are counted by a proxy in front of PostgreSQL (`pg_wire.py`), which slows the drain: `--no-count`
leaves it out. CPU comes from /proc (Linux): the worker processes' and the PostgreSQL backends' of
the throwaway database. Unlike jobs/s, CPU per job hardly moves with the load of a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import sys
import tempfile
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _backends_cpu(engine: Any, database: str) -> dict[int, float]:
    from sqlalchemy import text

    query = text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()")
    async with engine.connect() as conn:
        pids = (await conn.execute(query, {"db": database})).scalars().all()
    return {pid: cpu_s(pid) for pid in pids}


async def _main(args: argparse.Namespace, root: Path) -> None:
    # The checkout's own benchmark helpers, models and migrations.
    sys.path.insert(0, str(root))
    bq = _load("tree_bench_queue", root / "bench" / "bench_queue.py")
    wire = _load("pg_wire", HERE / "pg_wire.py")
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    server_url = os.environ.get("TEST_DATABASE_URL", bq.DEFAULT_URL)
    name = f"queue_costs_{uuid.uuid4().hex[:10]}"
    await bq._admin(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name)
    counter = wire.StatementCounter(url.host or "127.0.0.1", url.port or 5432)
    await counter.start()
    worker_url = url if args.no_count else url.set(port=counter.listen_port)
    engine = bq.create_engine(url.render_as_string(hide_password=False))
    workdir = Path(tempfile.mkdtemp(prefix="queue-costs-"))
    try:
        await asyncio.to_thread(bq.upgrade_to_head, url.render_as_string(hide_password=False))
        content = bq.pdf_bytes(bq.TEXTS["invoice"][0])
        (workdir / "storage" / "raw").mkdir(parents=True)
        (workdir / "storage" / bq.STORAGE_KEY).write_bytes(content)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CLASSIFIER_"))},
            "ENVIRONMENT": "test",
            "DATABASE_URL": worker_url.render_as_string(hide_password=False),
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(workdir / "storage"),
            "JWT_SECRET": "bench-secret-0123456789abcdef0123456789",
            "WORKER_CONCURRENCY": str(args.concurrency),
            "JANITOR_INTERVAL_S": "0",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(root),
        }
        env.pop("NOTIFICATION_URL", None)
        await bq._reset(engine)
        argv = [bq.PY, str(root / "bench" / "bench_queue.py"), "worker", "--classifier", "instant"]
        children = [bq.Child(argv, env, workdir / f"worker-{n}.log") for n in range(args.workers)]
        try:
            for child in children:
                child.wait_ready()
            await asyncio.sleep(1.0)  # Idle: what follows is the drain's.
            statements = counter.statements
            workers_cpu = sum(cpu_s(child.process.pid) for child in children)
            backends = await _backends_cpu(engine, name)
            enqueued = await bq._enqueue_backlog(engine, args.jobs, len(content))
            result = await bq._drain_and_measure(
                engine, "costs", args.workers, args.jobs, enqueued, "invoice"
            )
            statements = counter.statements - statements
            workers_cpu = sum(cpu_s(child.process.pid) for child in children) - workers_cpu
            backends_cpu = sum(
                cpu - backends.get(pid, 0.0)
                for pid, cpu in (await _backends_cpu(engine, name)).items()
            )
            async with engine.connect() as conn:
                events = 0
                if await conn.scalar(text("SELECT to_regclass('document_events') IS NOT NULL")):
                    events = await conn.scalar(text("SELECT count(*) FROM document_events"))
        finally:
            for child in children:
                child.stop()
    finally:
        await counter.stop()
        await engine.dispose()
        await bq._admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    per_job = "-" if args.no_count else f"{statements / args.jobs:.2f}"
    print(
        f"{root.name:14} {args.workers} worker(s) {args.jobs} jobs: {per_job} statements/job, "
        f"worker CPU {1000 * workers_cpu / args.jobs:.2f} ms/job, "
        f"PostgreSQL CPU {1000 * backends_cpu / args.jobs:.2f} ms/job, "
        f"{events / args.jobs:.1f} events/job, {result.jobs_per_s:.0f} jobs/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--tree", type=Path, default=HERE.parent, help="the checkout to measure")
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--no-count", action="store_true", help="no proxy: jobs/s undisturbed")
    args = parser.parse_args()
    asyncio.run(_main(args, args.tree.resolve()))


if __name__ == "__main__":
    main()

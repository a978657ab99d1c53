"""Events benchmark: from an upload's 202 to its `complete` event, idle workers' statements, and
1,000 open streams on one web process, in one run.

    .venv/bin/python bench/bench_events.py [--uploads 200] [--idle-s 20] [--streams 1000]

Everything runs on 127.0.0.1 against a throwaway database on the PostgreSQL at
`TEST_DATABASE_URL` (default: the local server): a web process (uvicorn, `WORKER_ENABLED=false`)
and a separate worker process with an instant classifier. Side by side, today's way (workers
poll every 0.25 s, clients poll `GET /v1/documents/{id}` every 0.25 s) and the events' way
(workers woken by NOTIFY, clients on `GET /v1/events`):

- latency: median and p95 from the upload's 202 to `complete` seen by the client, uploads one
  at a time;
- an idle worker's database statements per second, counted by a proxy in front of PostgreSQL
  that reads the wire protocol (each simple Query and each Execute is one statement; BEGIN and
  COMMIT included);
- the web process's RSS before and after opening 200 users x 5 streams, and the latency of
  uploads while they are open.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_queue import Child, InstantClassifier, _admin, free_port  # noqa: E402
from bench.pg_wire import StatementCounter  # noqa: E402
from tests.samples import TEXTS, pdf_bytes  # noqa: E402
from upload_service.db.migrate import upgrade_to_head  # noqa: E402
from upload_service.edge.auth import mint_token  # noqa: E402

PY = sys.executable
DEFAULT_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-secret-0123456789abcdef0123456789"
TODAY_POLL_S = 0.25  # the worker's poll before NOTIFY, and the upload client's first interval
EVENT_TIMEOUT_S = 30.0


# --- the worker child ----------------------------------------------------------------------------


async def _worker_main(mode: str) -> None:
    from upload_service.config import load_settings
    from upload_service.events.outbox import JOBS_CHANNEL
    from upload_service.jobs.worker import Worker
    from upload_service.lifespan import open_resources

    settings = load_settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    channels = (JOBS_CHANNEL,) if mode == "notify" else ()
    async with open_resources(settings, wake_channels=channels) as res:
        assert res.sessions is not None
        assert res.storage is not None
        assert res.http is not None
        worker = Worker(
            res.sessions,
            res.storage,
            InstantClassifier(read_content=False),
            res.http,
            settings,
            poll_interval_s=TODAY_POLL_S,
            wakeups=res.wakeups if mode == "notify" else None,
        )
        await worker.start()
        print("ready", flush=True)
        await stop.wait()
        await worker.stop(10)


# --- measurements ----------------------------------------------------------------------


@dataclass
class Latency:
    name: str
    median_ms: float
    p95_ms: float
    count: int


def _latency(name: str, samples: list[float]) -> Latency:
    ordered = sorted(samples)
    p95 = ordered[max(0, round(0.95 * len(ordered)) - 1)]
    return Latency(name, statistics.median(ordered) * 1000, p95 * 1000, len(ordered))


def _auth(user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, user)}"}


async def _upload(client: httpx.AsyncClient, user: str, content: bytes) -> tuple[str, float]:
    response = await client.post(
        "/v1/documents",
        files={"file": ("bench.pdf", content, "application/pdf")},
        headers=_auth(user),
    )
    accepted = time.perf_counter()
    if response.status_code != 202:
        raise RuntimeError(f"upload answered {response.status_code}: {response.text[:200]}")
    return str(response.json()["doc_id"]), accepted


async def polling_latencies(base_url: str, uploads: int, content: bytes) -> list[float]:
    """Today: upload, then GET the document every 0.25 s until it is complete."""
    samples = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for _ in range(uploads):
            doc_id, accepted = await _upload(client, "poller", content)
            deadline = accepted + EVENT_TIMEOUT_S
            while time.perf_counter() < deadline:
                got = await client.get(f"/v1/documents/{doc_id}", headers=_auth("poller"))
                if got.json()["status"] == "complete":
                    break
                await asyncio.sleep(TODAY_POLL_S)
            else:
                raise RuntimeError(f"{doc_id} not complete in {EVENT_TIMEOUT_S}s")
            samples.append(time.perf_counter() - accepted)
    return samples


class Stream:
    """One `GET /v1/events` on a raw socket; `completed` maps doc ids to arrival times."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.completed: dict[str, float] = {}
        self.arrived = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, port: int, user: str) -> Stream:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        token = _auth(user)["Authorization"]
        writer.write(
            f"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {token}\r\n"
            "Accept: text/event-stream\r\n\r\n".encode()
        )
        status = await reader.readline()
        if b" 200 " not in status:
            raise RuntimeError(f"stream refused: {status!r}")
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
        return cls(reader, writer)

    async def _read(self) -> None:
        # Chunked transfer encoding: chunk sizes and payloads; an event's `data:` line is JSON.
        while line := await self.reader.readline():
            if line.startswith(b"data: {"):
                data = json.loads(line[6:])
                if data.get("status") == "complete":
                    self.completed[data["doc_id"]] = time.perf_counter()
                    self.arrived.set()

    async def wait_complete(self, doc_id: str) -> float:
        deadline = time.perf_counter() + EVENT_TIMEOUT_S
        while doc_id not in self.completed:
            self.arrived.clear()
            if doc_id in self.completed:
                break
            await asyncio.wait_for(self.arrived.wait(), max(0.0, deadline - time.perf_counter()))
        return self.completed[doc_id]

    def close(self) -> None:
        self.task.cancel()
        self.writer.close()


async def event_latencies(
    base_url: str, stream: Stream, user: str, uploads: int, content: bytes
) -> list[float]:
    """Events: on `user`'s open stream, upload, then wait for the `complete` event."""
    samples = []
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        for _ in range(uploads):
            doc_id, accepted = await _upload(client, user, content)
            samples.append(await stream.wait_complete(doc_id) - accepted)
    return samples


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def idle_statements_per_s(
    counter: StatementCounter, start_worker: Callable[[], Child], seconds: float
) -> float:
    worker = start_worker()
    try:
        worker.wait_ready()
        await asyncio.sleep(2.0)  # Start-up (schema check, first claim) is not idling.
        before = counter.statements
        await asyncio.sleep(seconds)
        return (counter.statements - before) / seconds
    finally:
        worker.stop()


# --- the run ----------------------------------------------------------------------


async def _main(args: argparse.Namespace) -> None:
    server_url = os.environ.get("TEST_DATABASE_URL", DEFAULT_URL)
    name = f"bench_events_{uuid.uuid4().hex[:10]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-events-"))
    server = make_url(url)
    counter = StatementCounter(server.host or "127.0.0.1", server.port or 5432)
    await counter.start()
    counted_url = server.set(port=counter.listen_port).render_as_string(hide_password=False)
    content = pdf_bytes(TEXTS["invoice"][0])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "CLASSIFIER_"))},
        "ENVIRONMENT": "test",
        "DATABASE_URL": url,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(workdir / "storage"),
        "JWT_SECRET": SECRET,
        "WORKER_ENABLED": "false",
        "JANITOR_INTERVAL_S": "0",
        "UPLOAD_RATE_LIMIT": "1000000/minute",
        "QUERY_RATE_LIMIT": "1000000/minute",
        "SLOW_REQUEST_MS": "100000000",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }
    env.pop("NOTIFICATION_URL", None)

    def worker(mode: str, extra: dict[str, str] | None = None) -> Child:
        return Child(
            [PY, str(Path(__file__).resolve()), "worker", "--wake", mode],
            {**env, **(extra or {})},
            workdir / f"worker-{mode}-{time.monotonic_ns()}.log",
        )

    try:
        await asyncio.to_thread(upgrade_to_head, url)
        counted = {"DATABASE_URL": counted_url, "DATABASE_POOLER": "false"}
        idle_poll = await idle_statements_per_s(
            counter, lambda: worker("poll", counted), args.idle_s
        )
        idle_notify = await idle_statements_per_s(
            counter, lambda: worker("notify", counted), args.idle_s
        )

        port = free_port()
        web = Child(
            [
                PY,
                "-m",
                "uvicorn",
                "upload_service.main:app",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--no-access-log",
            ],
            env,
            workdir / "web.log",
        )
        web.wait_ready("Application startup complete")
        base = f"http://127.0.0.1:{port}"
        try:
            polling = worker("poll")
            polling.wait_ready()
            try:
                await polling_latencies(base, 10, content)  # warm-up
                today = _latency(
                    "today: polling", await polling_latencies(base, args.uploads, content)
                )
            finally:
                polling.stop()
            notified = worker("notify")
            notified.wait_ready()
            try:
                alone = await Stream.open(port, "streamer")
                try:
                    await event_latencies(base, alone, "streamer", 10, content)  # warm-up
                    sampled = await event_latencies(base, alone, "streamer", args.uploads, content)
                finally:
                    alone.close()
                events = _latency("events: NOTIFY + SSE", sampled)
                rss_before = rss_mib(web.process.pid)
                users = args.streams // 5
                streams: list[Stream] = []
                for batch in range(0, users, 20):
                    streams += await asyncio.gather(
                        *(
                            Stream.open(port, f"user-{n}")
                            for n in range(batch, min(users, batch + 20))
                            for _ in range(5)
                        )
                    )
                await asyncio.sleep(2.0)
                rss_after = rss_mib(web.process.pid)
                # On one of user-7's five streams, while every other stream stays open.
                crowd = await event_latencies(base, streams[35], "user-7", args.uploads, content)
                crowded = _latency(f"events, {len(streams)} streams open", crowd)
                rss_during = rss_mib(web.process.pid)
                for stream in streams:
                    stream.close()
            finally:
                notified.stop()
        finally:
            web.stop()
        _print(
            args,
            today,
            events,
            crowded,
            idle_poll,
            idle_notify,
            rss_before,
            rss_after,
            rss_during,
            len(streams),
        )
    finally:
        await counter.stop()
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _print(
    args: argparse.Namespace,
    today: Latency,
    events: Latency,
    crowded: Latency,
    idle_poll: float,
    idle_notify: float,
    rss_before: float,
    rss_after: float,
    rss_during: float,
    streams: int,
) -> None:
    print(
        f"\nevents: web process and worker process apart, instant classifier, {os.cpu_count()} CPUs"
    )
    print(f"{'202 -> complete seen by the client':40} {'uploads':>7} {'median':>9} {'p95':>9}")
    for row in (today, events, crowded):
        print(f"{row.name:40} {row.count:7d} {row.median_ms:7.1f}ms {row.p95_ms:7.1f}ms")
    print(f"{'idle worker, statements/s':40} today {idle_poll:5.2f}   NOTIFY {idle_notify:5.2f}")
    print(
        f"web RSS: {rss_before:.1f} MiB before, {rss_after:.1f} MiB with {streams} streams "
        f"(+{rss_after - rss_before:.1f} MiB), {rss_during:.1f} MiB after the uploads"
    )
    print(
        "goals: events median <= 50 ms, p95 <= 150 ms (also with the streams open); "
        "idle worker <= 1 statement/s; streams' RSS growth <= 50 MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command")
    child = sub.add_parser("worker", help="(internal) one worker process")
    child.add_argument("--wake", choices=["poll", "notify"], required=True)
    parser.add_argument("--uploads", type=int, default=200)
    parser.add_argument("--idle-s", type=float, default=20.0)
    parser.add_argument("--streams", type=int, default=1000)
    args = parser.parse_args()
    if args.command == "worker":
        asyncio.run(_worker_main(args.wake))
        return
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()

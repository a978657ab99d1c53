"""Request overhead: the service's full stack against a bare FastAPI app, in one run, with wrk.

    .venv/bin/python bench/bench_overhead.py [--duration 10] [--connections 32] [--rounds 2]

Each server is one uvicorn worker on 127.0.0.1; wrk (one thread) runs as a second process.
Measured: GET /health, and an authenticated GET /v1/documents/{id} that verifies an HS256 token
and reads the row from PostgreSQL (TEST_DATABASE_URL, default postgres@127.0.0.1:5432), each as
a ratio of the bare app's requests/s for a small JSON. Rounds alternate the servers and the best
round of each is kept, so a noisy neighbour hurts both sides alike. Goals: /health >= 0.80,
authenticated read >= 0.18.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx  # readiness polling only
from fastapi import FastAPI
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
SECRET = "bench-secret-0123456789abcdef0123456789abcdef"
DOC_ID = "doc_01HN3K8V2NKDQ7HTXJFR9CPWK0"
OWNER = "bench-user"
GOALS = {"health": 0.80, "document": 0.18}

bare = FastAPI()


@bare.get("/health")
async def bare_health() -> dict[str, str]:
    """The reference: a bare FastAPI route answering a small JSON."""
    return {"status": "alive", "timestamp": "2026-01-15T10:30:00Z"}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p99_ms: float
    non_2xx: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def server(app: str, env: dict[str, str], log: Path) -> Iterator[str]:
    """One uvicorn worker serving `app` until the block ends; ends only its own pid."""
    port = free_port()
    argv = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{app} exited:\n{log.read_text()[-2000:]}")
                try:
                    if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            yield url
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wrk(url: str, duration_s: int, connections: int, headers: dict[str, str]) -> WrkResult:
    """Requests/s, p99 latency and non-2xx count of one wrk run against `url`."""
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{duration_s}s", "--latency"]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    out = subprocess.run(
        [*argv, url], capture_output=True, text=True, check=True, timeout=duration_s + 30
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return WrkResult(rps, p99_ms, int(non_2xx.group(1)) if non_2xx else 0)


async def admin(url: str, sql: str, *args: object) -> None:
    u = make_url(url)
    conn = await asyncpg.connect(
        host=u.host, port=u.port or 5432, user=u.username, password=u.password,
        database=u.database, timeout=5,
    )  # fmt: skip
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@contextmanager
def bench_database(server_url: str) -> Iterator[str]:
    """A fresh, migrated database holding one document of the bench user; dropped at the end."""
    from upload_service.db.migrate import upgrade_to_head

    name = f"bench_overhead_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(server_url, f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        upgrade_to_head(url)
        now = datetime.now(UTC)
        asyncio.run(
            admin(
                url,
                "INSERT INTO documents (id, owner, status, filename, content_type, size_bytes,"
                " sha256, storage_key, created_at, updated_at)"
                " VALUES ($1, $2, 'complete', 'invoice.pdf', 'application/pdf', 1024, $3, $4,"
                " $5, $5)",
                DOC_ID,
                OWNER,
                "0" * 64,
                f"raw/{DOC_ID}.pdf",
                now,
            )
        )
        yield url
    finally:
        asyncio.run(admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> int:
    """Run the comparison and print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds of each wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    pg = os.environ.get("TEST_DATABASE_URL", DEFAULT_PG)
    try:
        asyncio.run(admin(pg, "SELECT 1"))
    except (OSError, asyncpg.PostgresError) as exc:
        print(f"PostgreSQL at {pg} does not answer: {exc}", file=sys.stderr)
        return 2

    from upload_service.edge.auth import mint_token

    token = mint_token(SECRET, OWNER, ttl_s=3600)
    load_before = os.getloadavg()[0]
    logs = ROOT / "var" / "bench"
    logs.mkdir(parents=True, exist_ok=True)
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("PROMETHEUS_")}
    best: dict[str, WrkResult] = {}

    def keep(name: str, result: WrkResult) -> None:
        if name not in best or result.requests_per_s > best[name].requests_per_s:
            best[name] = result

    with ExitStack() as stack:
        database = stack.enter_context(bench_database(pg))
        service_env = {
            **base_env,
            "ENVIRONMENT": "production",
            "DATABASE_URL": database,
            "JWT_SECRET": SECRET,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(logs / "storage"),
            "WORKER_ENABLED": "false",
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            # The limiter still runs on every request; the budget only has to outlast wrk.
            "QUERY_RATE_LIMIT": "100000000/minute",
        }
        for round_number in range(1, args.rounds + 1):
            with server("bench.bench_overhead:bare", base_env, logs / "bare.log") as url:
                wrk(f"{url}/health", 2, args.connections, {})  # warm-up
                keep("bare", wrk(f"{url}/health", args.duration, args.connections, {}))
            with server("upload_service.main:app", service_env, logs / "service.log") as url:
                auth = {"Authorization": f"Bearer {token}"}
                document = f"{url}/v1/documents/{DOC_ID}"
                assert httpx.get(document, headers=auth).status_code == 200
                wrk(f"{url}/health", 2, args.connections, {})  # warm-up
                keep("health", wrk(f"{url}/health", args.duration, args.connections, {}))
                wrk(document, 2, args.connections, auth)
                keep("document", wrk(document, args.duration, args.connections, auth))
            print(f"round {round_number}/{args.rounds} done", file=sys.stderr)

    reference = best["bare"].requests_per_s
    print(f"wrk -t1 -c{args.connections} -d{args.duration}s, best of {args.rounds} rounds")
    # Other work on the machine shifts both sides, but not always equally: say how busy it was.
    print(f"load average before/after: {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    print(f"{'':28} {'req/s':>10} {'p99 ms':>8} {'ratio':>7} {'goal':>6}")
    labels = {
        "bare": "bare FastAPI GET /health",
        "health": "service GET /health",
        "document": "service GET /v1/documents/{id}",
    }
    failed = False
    for name, label in labels.items():
        result = best[name]
        ratio = result.requests_per_s / reference
        goal = GOALS.get(name)
        mark = "" if goal is None else ("ok" if ratio >= goal else "SHORT")
        failed |= goal is not None and ratio < goal
        goal_text = f"{goal:.2f}" if goal else "-"
        print(
            f"{label:28} {result.requests_per_s:10.0f} {result.p99_ms:8.2f} {ratio:7.3f} "
            f"{goal_text:>6} {mark}" + (f" ({result.non_2xx} non-2xx!)" if result.non_2xx else "")
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

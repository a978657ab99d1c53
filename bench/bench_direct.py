"""Direct-upload benchmark: a file sent straight to S3 through the service's presigned requests,
against boto3's own `upload_file` of the same file to the same endpoint, in one run.

    .venv/bin/python bench/bench_direct.py [--mib 256] [--rounds 3]

Everything runs on 127.0.0.1: moto's S3 server and the service on one uvicorn worker (S3
storage, SQLite, no in-process job worker). The direct upload is what `upload-service upload
--direct` does (`cli/direct_client.py`): hash the file, declare it, PUT 8 MiB parts two in flight
to their signed URLs, complete. Printed: the time of each against boto3's, and the CPU time the
service process spent per GiB (sign + complete + verify), beside what the same file costs it
through `POST /v1/documents`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import boto3
import httpx
from botocore.config import Config
from rich.progress import Progress

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.bench_upload import free_port, make_pdf, process, upload_all  # noqa: E402

PY = sys.executable
MIB = 1024 * 1024
GIB = 1024 * MIB
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def measured(pid: int, action: Callable[[], object]) -> tuple[float, float]:
    """Wall seconds of `action`, and the CPU seconds `pid` spent meanwhile."""
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    action()
    elapsed = time.perf_counter() - started
    return elapsed, cpu_seconds(pid) - cpu_before


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-direct-"))
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    big = make_pdf(work / "big.pdf", args.mib * MIB)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
    )
    moto_url = f"http://127.0.0.1:{free_port()}"
    secret = "bench-secret-0123456789abcdef0123456789"
    service_port = free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    service_env = {
        **env,
        "ENVIRONMENT": "test",
        "JWT_SECRET": secret,
        "WORKER_ENABLED": "false",
        "DATABASE_URL": f"sqlite+aiosqlite:///{work}/bench.db",
        "MAX_FILE_SIZE_MB": str(args.mib + 8),
        "LOG_LEVEL": "WARNING",
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": "bench",
        "S3_ENDPOINT_URL": moto_url,
        "S3_REGION": "us-east-1",
    }
    subprocess.run(
        [PY, "-m", "upload_service.cli", "migrate"], env=service_env, check=True, cwd=ROOT
    )
    from upload_service.cli.direct_client import DirectSender
    from upload_service.edge.auth import mint_token

    headers = {"Authorization": f"Bearer {mint_token(secret, 'bench', ttl_s=3600)}"}
    with ExitStack() as stack:
        moto_port = moto_url.rsplit(":", 1)[1]
        stack.enter_context(
            process(
                [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", moto_port],
                env,
                f"{moto_url}/moto-api/",
                work / "moto.log",
            )
        )
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="bench")
        uvicorn = [
            PY,
            "-m",
            "uvicorn",
            "upload_service.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(service_port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        pid = stack.enter_context(
            process(uvicorn, service_env, f"{service_url}/health", work / "service.log")
        )
        completes: list[float] = []
        started_at: dict[str, float] = {}

        def on_request(request: httpx.Request) -> None:
            started_at[str(request.url)] = time.perf_counter()

        def on_response(response: httpx.Response) -> None:
            # The answer's headers: the service finished completing (finish, verify, record).
            url = str(response.request.url)
            if url.endswith("/complete"):
                completes.append(time.perf_counter() - started_at[url])

        api = stack.enter_context(
            httpx.Client(
                base_url=service_url,
                headers=headers,
                timeout=600,
                event_hooks={"request": [on_request], "response": [on_response]},
            )
        )
        s3_http = stack.enter_context(httpx.Client(timeout=600))
        sender = DirectSender(work / "state", s3_http)
        progress = stack.enter_context(Progress(disable=True))

        def empty_bucket() -> None:
            for item in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                s3.delete_object(Bucket="bench", Key=item["Key"])

        def boto3_upload() -> None:
            s3.upload_file(str(big), "bench", "reference/big.pdf")

        def direct_upload() -> None:
            outcome = sender.send(api, progress, big)
            if outcome.error:
                raise RuntimeError(outcome.error)

        def service_upload() -> None:
            upload_all(f"{service_url}/v1/documents", [big], headers)

        # Warm-up: first-use costs (botocore models, SQL compilation) are paid once a process,
        # for each path: a POST, a multipart upload, an upload through the service.
        tiny = make_pdf(work / "tiny.pdf", 64 * 1024)
        sender.send(api, progress, tiny)
        sender.send(api, progress, make_pdf(work / "warm.pdf", 20 * MIB))
        upload_all(f"{service_url}/v1/documents", [tiny], headers)
        empty_bucket()
        completes.clear()

        # Rounds alternate the contenders so that noise falls on each alike; best round wins.
        walls: dict[str, list[float]] = {}
        cpus: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, action in (
                ("boto3", boto3_upload),
                ("direct", direct_upload),
                ("service", service_upload),
            ):
                wall, cpu = measured(pid, action)
                walls.setdefault(name, []).append(wall)
                cpus.setdefault(name, []).append(cpu)
                empty_bucket()

    best = {name: min(values) for name, values in walls.items()}
    # While boto3 uploads, the service only idles: its CPU then is the idle rate (timers, the
    # event loop), taken off the others so that what is left is the work of the upload itself.
    idle_rate = min(cpu / wall for cpu, wall in zip(cpus["boto3"], walls["boto3"], strict=True))
    work_cpu = {
        name: min(
            max(0.0, cpu - idle_rate * wall)
            for cpu, wall in zip(cpus[name], walls[name], strict=True)
        )
        for name in walls
    }
    raw_cpu = {name: min(values) for name, values in cpus.items()}
    gib = args.mib * MIB / GIB
    print(
        f"\nDirect-upload benchmark ({args.mib} MiB file, best of {args.rounds} rounds; moto S3 "
        "and 1 uvicorn worker on 127.0.0.1)\n"
    )
    print(f"{'':44} {'time':>8} {'rate':>13} {'svc CPU':>8} {'less idle':>10} {'per GiB':>8}")
    for name, label in (
        ("boto3", "boto3 upload_file -> S3 (reference)"),
        ("direct", "direct upload (8 MiB parts, 2 in flight)"),
        ("service", "POST /v1/documents (through the service)"),
    ):
        rate = args.mib / best[name]
        print(
            f"{label:44} {best[name]:7.2f}s {rate:7.1f} MiB/s {raw_cpu[name]:7.2f}s"
            f" {work_cpu[name]:9.2f}s {work_cpu[name] / gib:7.2f}s"
        )
    print(
        "  of which `complete` (finish, verify, copy out of staging, record): "
        f"{min(completes):.2f}s"
    )
    print(f"  service idle CPU rate: {idle_rate * 1000:.1f} ms/s")
    print()
    ratio = best["direct"] / best["boto3"]
    print(f"direct time / boto3 time:                 {ratio:5.2f}  (goal <= 1.10)")
    print(
        f"service CPU per GiB, direct:              {work_cpu['direct'] / gib:5.2f}s (goal <= 0.50)"
    )
    print(f"service CPU per GiB, POST /v1/documents:  {work_cpu['service'] / gib:5.2f}s")


if __name__ == "__main__":
    main()

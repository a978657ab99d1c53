"""Upload benchmark: throughput and memory of the service against references, in one run.

    .venv/bin/python bench/bench_upload.py [--big-mib 256] [--quick]

Everything runs on 127.0.0.1: moto's S3 server, the service on one uvicorn worker, and the
reference apps of `reference_apps.py`. Each figure is printed beside its reference so the ratio
is measured under the same conditions.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import httpx  # readiness polling only
from botocore.config import Config

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
MIB = 1024 * 1024
DEADLINE_S = 600  # Every phase stops by itself well before this.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer")


@contextmanager
def process(argv: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[int]:
    """Run a server process until the block ends; yields its pid. Ends only that pid."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_http(ready_url)
            yield proc.pid
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def reset_peak(pid: int) -> None:
    # Linux: writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def make_pdf(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        out.write(b"%PDF-1.4\n%")
        block = os.urandom(MIB)
        left = size - 10
        while left > 0:
            out.write(block[: min(left, MIB)])
            left -= MIB
    return path


def curl_upload(
    url: str, path: Path, headers: dict[str, str], raw: bool = False
) -> subprocess.Popen[bytes]:
    """Start one upload with curl (a client that streams from disk and costs no Python time)."""
    argv = ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", str(DEADLINE_S)]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    if raw:
        argv += ["-X", "POST", "-T", str(path), "-H", "Content-Type: application/octet-stream"]
    else:
        argv += ["-F", f"file=@{path};type=application/pdf"]
    return subprocess.Popen([*argv, url], stdout=subprocess.PIPE)


def upload_all(url: str, paths: list[Path], headers: dict[str, str], raw: bool = False) -> float:
    """Seconds to upload `paths` concurrently; every answer must be 202."""
    started = time.perf_counter()
    running = [curl_upload(url, path, headers, raw) for path in paths]
    codes = [proc.communicate(timeout=DEADLINE_S)[0].decode() for proc in running]
    elapsed = time.perf_counter() - started
    if set(codes) != {"202"}:
        raise RuntimeError(f"{url}: answers {codes}")
    return elapsed


def peak_growth(pid: int, url: str, paths: list[Path], headers: dict[str, str]) -> tuple[int, int]:
    """(idle RSS, peak RSS) in KiB around concurrent uploads of `paths`."""
    time.sleep(0.5)
    idle = rss_kib(pid)
    reset_peak(pid)
    upload_all(url, paths, headers)
    return idle, rss_kib(pid, "VmHWM")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="smaller files, for a smoke run")
    args = parser.parse_args()
    big_mib, mid_mib, small_mib = (32, 16, 4) if args.quick else (args.big_mib, 64, 16)

    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    files = work / "files"
    files.mkdir()
    big = make_pdf(files / "big.pdf", big_mib * MIB)
    mids = [make_pdf(files / f"mid{i}.pdf", mid_mib * MIB) for i in range(8)]
    smalls = [make_pdf(files / f"small{i}.pdf", small_mib * MIB) for i in range(8)]

    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_", "DATABASE_"))}
    env.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
    )
    moto_port = free_port()
    moto_url = f"http://127.0.0.1:{moto_port}"
    results: list[tuple[str, str]] = []

    with process(
        [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
        env,
        f"{moto_url}/moto-api/",
        work / "moto.log",
    ):
        s3 = boto3.client(
            "s3",
            endpoint_url=moto_url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(s3={"addressing_style": "path"}),
        )
        s3.create_bucket(Bucket="bench")

        started = time.perf_counter()
        s3.upload_file(str(big), "bench", "direct/big.pdf")
        direct_s = time.perf_counter() - started

        secret = "bench-secret-0123456789abcdef0123456789"
        service_env = {
            **env,
            "ENVIRONMENT": "test",
            "JWT_SECRET": secret,
            "WORKER_ENABLED": "false",
            "DATABASE_URL": f"sqlite+aiosqlite:///{work}/bench.db",
            "MAX_FILE_SIZE_MB": str(max(big_mib, 64) + 8),
            "LOG_LEVEL": "WARNING",
        }
        subprocess.run(
            [PY, "-m", "upload_service.cli", "migrate"], env=service_env, check=True, cwd=ROOT
        )
        from upload_service.auth import mint_token

        headers = {"Authorization": f"Bearer {mint_token(secret, 'bench', ttl_s=3600)}"}

        def uvicorn(app: str, port: int) -> list[str]:
            return [
                PY,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
            ]

        # The service on S3.
        port = free_port()
        s3_env = {
            **service_env,
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": "bench",
            "S3_ENDPOINT_URL": moto_url,
            "S3_REGION": "us-east-1",
        }
        url = f"http://127.0.0.1:{port}"
        with process(
            uvicorn("upload_service.main:app", port),
            s3_env,
            f"{url}/health",
            work / "service-s3.log",
        ) as pid:
            service_s3_s = upload_all(f"{url}/v1/documents", [big], headers)
            svc_idle16, svc_peak16 = peak_growth(pid, f"{url}/v1/documents", smalls, headers)
            svc_idle64, svc_peak64 = peak_growth(pid, f"{url}/v1/documents", mids, headers)

        # The usual way on S3.
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        usual_env = {
            **env,
            "REFERENCE_APP": "usual",
            "S3_ENDPOINT_URL": moto_url,
            "S3_BUCKET": "bench",
            "PYTHONPATH": str(ROOT),
        }
        with process(
            uvicorn("bench.reference_apps:usual", port),
            usual_env,
            f"{url}/health",
            work / "usual.log",
        ) as pid:
            usual_s3_s = upload_all(f"{url}/v1/documents", [big], {})
            usual_idle16, usual_peak16 = peak_growth(pid, f"{url}/v1/documents", smalls, {})
            usual_idle64, usual_peak64 = peak_growth(pid, f"{url}/v1/documents", mids, {})

    # Local storage: the service against a bare ASGI app that writes the body to disk.
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    local_env = {
        **service_env,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(work / "storage"),
    }
    with process(
        uvicorn("upload_service.main:app", port),
        local_env,
        f"{url}/health",
        work / "service-local.log",
    ):
        service_local_s = upload_all(f"{url}/v1/documents", [big], headers)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    (work / "bare").mkdir()
    bare_env = {**env, "BARE_DIR": str(work / "bare"), "PYTHONPATH": str(ROOT)}
    with process(
        uvicorn("bench.reference_apps:bare_disk", port),
        bare_env,
        f"{url}/health",
        work / "bare.log",
    ):
        bare_s = upload_all(f"{url}/upload", [big], {}, raw=True)

    def mb_s(seconds: float) -> str:
        return f"{big_mib / seconds:7.1f} MiB/s"

    print(
        f"\nUpload benchmark ({big_mib} MiB file; 8 x {small_mib} MiB and 8 x {mid_mib} MiB"
        " concurrent; 1 uvicorn worker; moto S3 on 127.0.0.1)\n"
    )
    print(f"{'throughput':42} {'time':>8}  {'rate':>14}")
    for name, seconds in [
        ("direct boto3 upload_file -> S3", direct_s),
        ("service -> S3", service_s3_s),
        ("usual way (UploadFile + put_object) -> S3", usual_s3_s),
        ("bare ASGI app -> disk", bare_s),
        ("service -> local disk", service_local_s),
    ]:
        print(f"{name:42} {seconds:7.2f}s  {mb_s(seconds)}")
    print()
    print(f"service S3 time / direct boto3 time:    {service_s3_s / direct_s:5.2f}  (goal <= 1.25)")
    print(f"usual S3 time / direct boto3 time:      {usual_s3_s / direct_s:5.2f}")
    print(
        f"service local / bare disk throughput:   {bare_s / service_local_s:5.2f}  (goal >= 0.70)"
    )
    print()
    print(f"{'memory (RSS, MiB)':42} {'idle':>7} {'peak':>7} {'growth':>7}")
    for name, idle, peak in [
        (f"service, 8 x {small_mib} MiB", svc_idle16, svc_peak16),
        (f"service, 8 x {mid_mib} MiB", svc_idle64, svc_peak64),
        (f"usual way, 8 x {small_mib} MiB", usual_idle16, usual_peak16),
        (f"usual way, 8 x {mid_mib} MiB", usual_idle64, usual_peak64),
    ]:
        print(f"{name:42} {idle / 1024:7.1f} {peak / 1024:7.1f} {(peak - idle) / 1024:7.1f}")
    print()
    print(
        f"service growth at 8 x {mid_mib} MiB:          {(svc_peak64 - svc_idle64) / 1024:6.1f} MiB"
        "  (goal <= 80)"
    )
    print(
        f"service peak {mid_mib} MiB / peak {small_mib} MiB:        {svc_peak64 / svc_peak16:5.2f}"
        "  (goal <= 1.15)"
    )
    print(
        f"usual-way peak {mid_mib} MiB / peak {small_mib} MiB:      {usual_peak64 / usual_peak16:5.2f}"
    )


if __name__ == "__main__":
    main()

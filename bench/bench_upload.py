"""Upload benchmark: throughput and memory of the service against references, in one run.

    .venv/bin/python bench/bench_upload.py [--big-mib 256] [--rounds 3] [--quick]

Everything runs on 127.0.0.1: moto's S3 server, the service on one uvicorn worker, and the
reference apps of `reference_apps.py`. Each figure is printed beside its reference so the ratio
is measured under the same conditions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


def peak_of(pid: int, url: str, paths: list[Path], headers: dict[str, str]) -> int:
    """Peak RSS in KiB of `pid` while `paths` are uploaded concurrently."""
    reset_peak(pid)
    upload_all(url, paths, headers)
    return rss_kib(pid, "VmHWM")


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        run(work)
    finally:
        # Gigabytes of test files and stored copies: never left behind.
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="smaller files, for a smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    big_mib, mid_mib, small_mib = (32, 16, 4) if args.quick else (args.big_mib, 64, 16)

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
    from upload_service.edge.auth import mint_token

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

    names = ("service_s3", "usual", "service_local", "bare", "service_mem", "usual_mem")
    ports = {name: free_port() for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    (work / "bare").mkdir()
    with ExitStack() as stack:
        stack.enter_context(
            process(
                [PY, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
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
        s3_env = {
            **service_env,
            "STORAGE_BACKEND": "s3",
            "S3_BUCKET": "bench",
            "S3_ENDPOINT_URL": moto_url,
            "S3_REGION": "us-east-1",
        }
        usual_env = {
            **env,
            "REFERENCE_APP": "usual",
            "S3_ENDPOINT_URL": moto_url,
            "S3_BUCKET": "bench",
            "PYTHONPATH": str(ROOT),
        }
        local_env = {
            **service_env,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(work / "storage"),
        }
        bare_env = {**env, "BARE_DIR": str(work / "bare"), "PYTHONPATH": str(ROOT)}
        pids = {
            "service_s3": stack.enter_context(
                process(
                    uvicorn("upload_service.main:app", ports["service_s3"]),
                    s3_env,
                    f"{urls['service_s3']}/health",
                    work / "service-s3.log",
                )
            ),
            "usual": stack.enter_context(
                process(
                    uvicorn("bench.reference_apps:usual", ports["usual"]),
                    usual_env,
                    f"{urls['usual']}/health",
                    work / "usual.log",
                )
            ),
            "service_local": stack.enter_context(
                process(
                    uvicorn("upload_service.main:app", ports["service_local"]),
                    local_env,
                    f"{urls['service_local']}/health",
                    work / "service-local.log",
                )
            ),
            # Fresh processes for the memory phase, untouched by the throughput rounds.
            "service_mem": stack.enter_context(
                process(
                    uvicorn("upload_service.main:app", ports["service_mem"]),
                    s3_env,
                    f"{urls['service_mem']}/health",
                    work / "service-mem.log",
                )
            ),
            "usual_mem": stack.enter_context(
                process(
                    uvicorn("bench.reference_apps:usual", ports["usual_mem"]),
                    usual_env,
                    f"{urls['usual_mem']}/health",
                    work / "usual-mem.log",
                )
            ),
            "bare": stack.enter_context(
                process(
                    uvicorn("bench.reference_apps:bare_disk", ports["bare"]),
                    bare_env,
                    f"{urls['bare']}/health",
                    work / "bare.log",
                )
            ),
        }

        def empty_bucket() -> None:
            # moto keeps objects in memory; emptying keeps every round on the same footing.
            for item in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                s3.delete_object(Bucket="bench", Key=item["Key"])

        def direct() -> float:
            started = time.perf_counter()
            s3.upload_file(str(big), "bench", "direct/big.pdf")
            return time.perf_counter() - started

        # Rounds alternate the contenders so that noise from the rest of the machine falls on
        # all of them alike; the best round of each is reported.
        timings: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, run in [
                ("direct", direct),
                (
                    "service_s3",
                    lambda: upload_all(f"{urls['service_s3']}/v1/documents", [big], headers),
                ),
                ("usual", lambda: upload_all(f"{urls['usual']}/v1/documents", [big], {})),
                (
                    "service_local",
                    lambda: upload_all(f"{urls['service_local']}/v1/documents", [big], headers),
                ),
                ("bare", lambda: upload_all(f"{urls['bare']}/upload", [big], {}, raw=True)),
            ]:
                timings.setdefault(name, []).append(run())
                empty_bucket()
        best = {name: min(values) for name, values in timings.items()}
        direct_s, service_s3_s, usual_s3_s = best["direct"], best["service_s3"], best["usual"]
        service_local_s, bare_s = best["service_local"], best["bare"]

        # Idle = after one small warm-up upload: first-use costs (botocore's S3 model, SQL
        # compilation caches) are paid once per process, not per upload.
        tiny = make_pdf(files / "tiny.pdf", 64 * 1024)
        upload_all(f"{urls['service_mem']}/v1/documents", [tiny], headers)
        upload_all(f"{urls['usual_mem']}/v1/documents", [tiny], {})
        time.sleep(1.0)
        svc_idle = rss_kib(pids["service_mem"])
        usual_idle = rss_kib(pids["usual_mem"])
        svc_peak16 = peak_of(
            pids["service_mem"], f"{urls['service_mem']}/v1/documents", smalls, headers
        )
        empty_bucket()
        svc_peak64 = peak_of(
            pids["service_mem"], f"{urls['service_mem']}/v1/documents", mids, headers
        )
        empty_bucket()
        usual_peak16 = peak_of(pids["usual_mem"], f"{urls['usual_mem']}/v1/documents", smalls, {})
        empty_bucket()
        usual_peak64 = peak_of(pids["usual_mem"], f"{urls['usual_mem']}/v1/documents", mids, {})
        svc_idle16 = svc_idle64 = svc_idle
        usual_idle16 = usual_idle64 = usual_idle

    def mb_s(seconds: float) -> str:
        return f"{big_mib / seconds:7.1f} MiB/s"

    print(
        f"\nUpload benchmark ({big_mib} MiB file, best of {args.rounds} rounds; 8 x {small_mib}"
        f" MiB and 8 x {mid_mib} MiB concurrent; 1 uvicorn worker; moto S3 on 127.0.0.1)\n"
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
    print(f"{'memory (RSS, MiB; idle = after a warm-up)':42} {'idle':>7} {'peak':>7} {'growth':>7}")
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
    usual_ratio = usual_peak64 / usual_peak16
    print(f"usual-way peak {mid_mib} MiB / peak {small_mib} MiB:      {usual_ratio:5.2f}")


if __name__ == "__main__":
    main()

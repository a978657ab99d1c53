"""tus benchmark: resumable uploads against the plain upload and boto3, in one run.

    .venv/bin/python -m bench.bench_tus [--big-mib 256] [--rounds 3] [--quick] [--postgres URL]

(as a module from the repository's root: it reuses `bench_upload.py` and the tests' TCP proxy).

Same set-up and files as `bench_upload.py` (whose helpers it reuses): moto's S3 server and the
service on one uvicorn worker each, all on 127.0.0.1, `MAX_FILE_SIZE_MB` raised for the big file.
The tus client is curl, one process per upload sending every PATCH of it on one connection
(`--next`), from chunk files cut beforehand: like the multipart reference, a client that streams
from disk and costs no Python time. Rounds alternate the contenders and the best round of each is
kept. Measured:

- throughput of 256 MiB over tus in 8 MiB and 1 MiB PATCHes, against the plain multipart upload
  of the same file to the same (local) service, and against a direct boto3 upload for S3;
- memory: RSS growth over idle of a fresh service process while 8 tus uploads of 64 MiB run at
  once (8 MiB PATCHes; also one PATCH each, and plain uploads, for comparison);
- resume cost: tus-js-client (tests/clients/node, `make install-dev`) sends 64 MiB in 8 MiB
  PATCHes through a TCP proxy that cuts the connection in the middle of the PATCH at half-way;
  the bytes it sends beyond those of an uncut upload are what the cut cost.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import boto3
import httpx
from botocore.config import Config
from sqlalchemy import make_url

from bench.bench_overhead import admin
from bench.bench_upload import (
    DEADLINE_S,
    MIB,
    PY,
    ROOT,
    free_port,
    make_pdf,
    process,
    reset_peak,
    rss_kib,
    upload_all,
)
from tests.fixtures.network import TcpProxy

T = TypeVar("T")
NODE_CLIENT = ROOT / "tests" / "clients" / "node"
TUS = "/v1/uploads/tus"
OCTET_STREAM = "application/offset+octet-stream"


def split(path: Path, chunk: int, into: Path) -> list[tuple[int, Path]]:
    """Cut `path` into files of `chunk` bytes (once per file and size): (offset, file) pairs."""
    folder = into / f"{path.stem}-{chunk}"
    if not folder.exists():
        folder.mkdir(parents=True)
        with path.open("rb") as source:
            offset = 0
            while data := source.read(chunk):
                (folder / f"{offset:012d}").write_bytes(data)
                offset += len(data)
    return [(int(part.name), part) for part in sorted(folder.iterdir())]


def random_pdf(path: Path, size: int) -> Path:
    """A PDF-looking file random all through (`make_pdf` repeats one MiB), so that any 16 bytes
    of it say where in the file they are."""
    with path.open("wb") as out:
        out.write(b"%PDF-1.4\n%")
        left = size - 10
        while left > 0:
            out.write(os.urandom(min(left, MIB)))
            left -= MIB
    return path


def tus_headers(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Tus-Resumable": "1.0.0"}


def create(base: str, path: Path, headers: dict[str, str]) -> str:
    """POST a tus creation for `path`; the absolute upload URL."""
    metadata = f"filename {base64.b64encode(path.name.encode()).decode()}"
    answer = httpx.post(
        f"{base}{TUS}",
        headers={
            **tus_headers(headers),
            "Upload-Length": str(path.stat().st_size),
            "Upload-Metadata": metadata,
        },
    )
    if answer.status_code != 201:
        raise RuntimeError(f"tus creation: {answer.status_code} {answer.text}")
    return str(httpx.URL(base).join(answer.headers["Location"]))


def curl_patches(
    url: str, chunks: list[tuple[int, Path]], headers: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start one curl that sends every chunk as a PATCH, in order, on one connection."""
    argv = ["curl", "-sS", "--max-time", str(DEADLINE_S)]
    for index, (offset, chunk) in enumerate(chunks):
        if index:
            argv.append("--next")
        argv += ["-X", "PATCH", "-T", str(chunk), "-o", "/dev/null", "-w", "%{http_code}\\n"]
        # No `Expect: 100-continue` round trip before each body: tus clients do not send it.
        argv += ["-H", "Expect:", "-H", f"Content-Type: {OCTET_STREAM}"]
        argv += ["-H", f"Upload-Offset: {offset}"]
        for name, value in tus_headers(headers).items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(url)
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def tus_upload_all(
    base: str, paths: list[Path], headers: dict[str, str], chunk: int, chunks_dir: Path
) -> float:
    """Seconds to upload `paths` concurrently over tus (creation included); all must finish."""
    pieces = [split(path, chunk, chunks_dir) for path in paths]
    started = time.perf_counter()
    urls = [create(base, path, headers) for path in paths]
    running = [curl_patches(url, parts, headers) for url, parts in zip(urls, pieces, strict=True)]
    codes = [proc.communicate(timeout=DEADLINE_S)[0].decode().split() for proc in running]
    elapsed = time.perf_counter() - started
    if {code for answers in codes for code in answers} != {"204"}:
        raise RuntimeError(f"{base}: PATCH answers {codes}")
    for url, path in zip(urls, paths, strict=True):
        head = httpx.head(url, headers=tus_headers(headers))
        if int(head.headers["Upload-Offset"]) != path.stat().st_size:
            raise RuntimeError(f"{url} unfinished: {head.headers}")
        if "Document-Location" not in head.headers:
            raise RuntimeError(f"{url} finished without a document: {head.headers}")
    return elapsed


class LoopThread:
    """An asyncio loop in a thread of its own, for the TCP proxy beside this synchronous run."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


@contextmanager
def proxy_to(port: int, loop: LoopThread) -> Iterator[TcpProxy]:
    proxy = TcpProxy("127.0.0.1", port)
    loop.run(proxy.start())
    try:
        yield proxy
    finally:
        loop.run(proxy.stop())


def node_upload(endpoint: str, path: Path, token: str, chunk: int) -> list[dict[str, Any]]:
    """Upload `path` with tus-js-client (retrying at once after an error); its events."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENT / "node_modules" / "tus-js-client").is_dir():
        raise RuntimeError("Node or tus-js-client is missing: run `make install-dev`")
    argv = [node, str(NODE_CLIENT / "tus-upload.mjs"), "--endpoint", endpoint]
    argv += ["--file", str(path), "--token", token, "--chunk-size", str(chunk)]
    argv += ["--retry-delays", "[0, 500, 1000]"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=DEADLINE_S, check=False)
    events = [json.loads(line) for line in done.stdout.splitlines()]
    if done.returncode != 0:
        raise RuntimeError(f"tus-js-client failed: {events[-3:]} {done.stderr[-2000:]}")
    return events


@dataclass
class ResumeCost:
    extra_bytes: int  # File bytes sent beyond those of an uncut upload (request heads apart).
    resumed_at: int  # The offset the client continued from (its last HEAD after the cut).
    cut_at: int  # About where in the file the connection was cut.
    answers: str  # What the server answered from the cut on (HEADs, refusals, retries).


def resume_cost(
    service_port: int, path: Path, token: str, chunk: int, loop: LoopThread
) -> ResumeCost:
    """Bytes a cut at half-way costs tus-js-client: an uncut and a cut upload, compared."""
    content = path.read_bytes()
    with proxy_to(service_port, loop) as proxy:
        endpoint = f"http://127.0.0.1:{proxy.port}{TUS}"
        uncut_events = node_upload(endpoint, path, token, chunk)
        uncut = proxy.bytes_up
        # Cut inside the PATCH that holds the middle of the file, a third of a chunk in; the
        # marker is 16 random bytes of the file there. Should the marker straddle two reads of
        # the proxy (then nothing is cut), the next position is tried.
        for attempt in range(4):
            position = len(content) // 2 // chunk * chunk + chunk // 3 + attempt * 4099
            proxy.bytes_up = 0
            proxy.cut_at(content[position : position + 16], forward=True)
            events = node_upload(endpoint, path, token, chunk)
            if proxy.cuts:
                break
        else:
            raise RuntimeError("the proxy never saw the marker to cut at")
        cut = proxy.bytes_up
    # The extra requests' heads (a HEAD, the repeated PATCH) are not file bytes sent again.
    requests, uncut_requests = (
        sum(event["event"] == "request" for event in run) for run in (events, uncut_events)
    )
    head_bytes = (uncut - len(content)) / uncut_requests
    extra = max(0, round(cut - uncut - (requests - uncut_requests) * head_bytes))
    answers = [event for event in events if event["event"] == "response"]
    heads = [event["offset"] for event in answers if event["method"] == "HEAD"]
    # From the first HEAD (the client's way back after the cut) to the next 204.
    start = next((i for i, event in enumerate(answers) if event["method"] == "HEAD"), 0)
    after: list[str] = []
    for event in answers[start:]:
        after.append(f"{event['method']} {event['status']}")
        if event["status"] == 204:
            break
    return ResumeCost(extra, heads[-1] if heads else -1, position, ", ".join(after))


def memory_growth(
    base: str,
    pid: int,
    paths: list[Path],
    tiny: Path,
    headers: dict[str, str],
    chunks_dir: Path,
    small_patches: bool = False,
) -> list[tuple[str, tuple[int, int]]]:
    """(idle, peak) RSS in KiB of a fresh service `pid` while `paths` are uploaded at once.

    With `small_patches`, only in 1 MiB PATCHes: a process of its own, since their many small
    buffers leave the heap larger than they found it, which would raise the peaks after them.
    """
    # Idle = after one small warm-up tus upload and one plain upload: first-use costs (botocore's
    # S3 model, SQL compilation caches) are paid once per process, not per upload.
    tus_upload_all(base, [tiny], headers, 8 * MIB, chunks_dir)
    upload_all(f"{base}/v1/documents", [tiny], headers)
    time.sleep(1.0)
    idle = rss_kib(pid)
    whole = paths[0].stat().st_size
    uploads: list[tuple[str, Callable[[], float]]]
    if small_patches:
        uploads = [
            ("tus 1 MiB PATCHes", lambda: tus_upload_all(base, paths, headers, MIB, chunks_dir))
        ]
    else:
        uploads = [
            (
                "tus 8 MiB PATCHes",
                lambda: tus_upload_all(base, paths, headers, 8 * MIB, chunks_dir),
            ),
            ("tus one PATCH", lambda: tus_upload_all(base, paths, headers, whole, chunks_dir)),
            ("plain upload", lambda: upload_all(f"{base}/v1/documents", paths, headers)),
        ]
    found = []
    for label, upload in uploads:
        reset_peak(pid)
        upload()
        found.append((label, (idle, rss_kib(pid, "VmHWM"))))
    return found


@contextmanager
def database(work: Path, postgres: str | None) -> Iterator[str]:
    """The service's database: a SQLite file (as `bench_upload.py`), or a fresh database on the
    PostgreSQL server `postgres`, dropped at the end."""
    if postgres is None:
        yield f"sqlite+aiosqlite:///{work}/bench.db"
        return
    name = f"bench_tus_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(postgres, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(postgres, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--quick", action="store_true", help="smaller files, for a smoke run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="a PostgreSQL server to run the service on (say "
        "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres) instead of a SQLite file",
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tus-"))
    try:
        with database(work, args.postgres) as database_url:
            run(work, args, database_url)
    finally:
        # Gigabytes of test files, chunks and stored copies: never left behind.
        shutil.rmtree(work, ignore_errors=True)


def run(work: Path, args: argparse.Namespace, database_url: str) -> None:
    big_mib, mid_mib = (32, 16) if args.quick else (args.big_mib, 64)

    files, chunks_dir = work / "files", work / "chunks"
    files.mkdir()
    big = make_pdf(files / "big.pdf", big_mib * MIB)
    mids = [make_pdf(files / f"mid{i}.pdf", mid_mib * MIB) for i in range(8)]
    unique = random_pdf(files / "unique.pdf", mid_mib * MIB)

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
        "DATABASE_URL": database_url,
        "MAX_FILE_SIZE_MB": str(max(big_mib, 64) + 8),
        "LOG_LEVEL": "WARNING",
        # Hundreds of PATCHes a round: the rate limits are not what is measured here.
        "UPLOAD_RATE_LIMIT": "1000000/minute",
        "QUERY_RATE_LIMIT": "1000000/minute",
    }
    subprocess.run(
        [PY, "-m", "upload_service.cli", "migrate"], env=service_env, check=True, cwd=ROOT
    )
    from upload_service.edge.auth import mint_token

    token = mint_token(secret, "bench", ttl_s=3600)
    headers = {"Authorization": f"Bearer {token}"}

    def uvicorn(port: int) -> list[str]:
        app = ["upload_service.main:app", "--host", "127.0.0.1", "--port", str(port)]
        return [
            PY,
            "-m",
            "uvicorn",
            *app,
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        ]

    names = ("s3", "local", "s3_mem", "local_mem", "s3_mem_1", "local_mem_1")
    ports = {name: free_port() for name in names}
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    loop = LoopThread()
    with ExitStack() as stack:
        stack.callback(loop.close)
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
        local_env = {
            **service_env,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(work / "storage"),
        }
        envs = {
            "s3": s3_env,
            "local": local_env,
            "s3_mem": s3_env,
            "local_mem": local_env,
            "s3_mem_1": s3_env,
            "local_mem_1": local_env,
        }
        pids = {
            name: stack.enter_context(
                process(uvicorn(ports[name]), envs[name], f"{urls[name]}/health", work / name)
            )
            for name in names
        }

        def empty_storage() -> None:
            # moto keeps objects in memory, and 256 MiB copies pile up on disk: each round
            # starts from an empty store.
            for item in s3.list_objects_v2(Bucket="bench").get("Contents", []):
                s3.delete_object(Bucket="bench", Key=item["Key"])
            shutil.rmtree(work / "storage" / "raw", ignore_errors=True)

        def direct() -> float:
            started = time.perf_counter()
            s3.upload_file(str(big), "bench", "direct/big.pdf")
            return time.perf_counter() - started

        def one_part_at_a_time() -> float:
            # What a tus server must do at least: a PATCH's part can only go once its bytes
            # are in, and the client sends the next PATCH only once this one is answered.
            started = time.perf_counter()
            upload = s3.create_multipart_upload(
                Bucket="bench", Key="floor/big.pdf", ChecksumAlgorithm="CRC32"
            )["UploadId"]
            parts = []
            with big.open("rb") as source:
                while data := source.read(8 * MIB):
                    number = len(parts) + 1
                    sent = s3.upload_part(
                        Bucket="bench",
                        Key="floor/big.pdf",
                        UploadId=upload,
                        PartNumber=number,
                        Body=data,
                        ChecksumAlgorithm="CRC32",
                    )
                    parts.append(
                        {
                            "PartNumber": number,
                            "ETag": sent["ETag"],
                            "ChecksumCRC32": sent["ChecksumCRC32"],
                        }
                    )
            s3.complete_multipart_upload(
                Bucket="bench",
                Key="floor/big.pdf",
                UploadId=upload,
                MultipartUpload={"Parts": parts},
            )
            return time.perf_counter() - started

        def tus(name: str, chunk_mib: int) -> Callable[[], float]:
            return lambda: tus_upload_all(urls[name], [big], headers, chunk_mib * MIB, chunks_dir)

        def plain_local() -> float:
            return upload_all(f"{urls['local']}/v1/documents", [big], headers)

        contenders: list[tuple[str, Callable[[], float]]] = [
            ("direct", direct),
            ("parts_s3_8", one_part_at_a_time),
            ("tus_s3_8", tus("s3", 8)),
            ("tus_s3_1", tus("s3", 1)),
            (
                "multipart_local",
                lambda: upload_all(f"{urls['local']}/v1/documents", [big], headers),
            ),
            ("tus_local_8", tus("local", 8)),
            ("tus_local_1", tus("local", 1)),
        ]
        timings: dict[str, list[float]] = {}
        for _ in range(args.rounds):
            for name, contender in contenders:
                timings.setdefault(name, []).append(contender())
                empty_storage()
        best = {name: min(values) for name, values in timings.items()}
        syncs = {chunk_mib: sync_cost(big, chunk_mib * MIB, work) for chunk_mib in (8, 1)}

        tiny = make_pdf(files / "tiny.pdf", 64 * 1024)
        memory: dict[str, tuple[int, int]] = {}
        for backend in ("s3", "local"):
            for name, small in ((f"{backend}_mem", False), (f"{backend}_mem_1", True)):
                found = memory_growth(
                    urls[name], pids[name], mids, tiny, headers, chunks_dir, small
                )
                memory.update({f"{backend}, {label}": figures for label, figures in found})
                empty_storage()

        resume = {
            name: resume_cost(ports[name], unique, token, 8 * MIB, loop) for name in ("local", "s3")
        }
        empty_storage()

    database_name = make_url(database_url).get_backend_name()
    report(big_mib, mid_mib, args.rounds, database_name, best, memory, resume, syncs)


def sync_cost(path: Path, chunk: int, work: Path, rounds: int = 3) -> float:
    """Seconds an fdatasync after every `chunk` bytes adds to writing `path` on this disk (the
    storage's), over one fsync at the end: what storing each PATCH before answering costs."""

    def write(sync_each: bool) -> float:
        target = work / "storage" / "sync-floor.bin"
        target.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with path.open("rb") as source, target.open("wb") as out:
            while data := source.read(chunk):
                out.write(data)
                if sync_each:
                    out.flush()
                    os.fdatasync(out.fileno())
            out.flush()
            os.fsync(out.fileno())
        elapsed = time.perf_counter() - started
        target.unlink()
        return elapsed

    each = min(write(True) for _ in range(rounds))
    once = min(write(False) for _ in range(rounds))
    return max(0.0, each - once)


def report(
    big_mib: int,
    mid_mib: int,
    rounds: int,
    database_name: str,
    best: dict[str, float],
    memory: dict[str, tuple[int, int]],
    resume: dict[str, ResumeCost],
    syncs: dict[int, float],
) -> None:
    def rate(seconds: float) -> str:
        return f"{big_mib / seconds:7.1f} MiB/s"

    print(
        f"\ntus benchmark ({big_mib} MiB file, best of {rounds} rounds; 8 x {mid_mib} MiB"
        f" concurrent; 1 uvicorn worker; {database_name}; moto S3 on 127.0.0.1; a shared 2-core"
        " machine: noisy)\n"
    )
    print(f"{'throughput':44} {'time':>8}  {'rate':>14}")
    for name, label in [
        ("direct", "direct boto3 upload_file -> S3"),
        ("parts_s3_8", "boto3, one 8 MiB part at a time -> S3"),
        ("tus_s3_8", "tus, 8 MiB PATCHes -> S3"),
        ("tus_s3_1", "tus, 1 MiB PATCHes -> S3"),
        ("multipart_local", "plain multipart upload -> local disk"),
        ("tus_local_8", "tus, 8 MiB PATCHes -> local disk"),
        ("tus_local_1", "tus, 1 MiB PATCHes -> local disk"),
    ]:
        print(f"{label:44} {best[name]:7.2f}s  {rate(best[name])}")
    print()
    print(f"{'memory (RSS, MiB; idle = after a warm-up)':44} {'idle':>7} {'peak':>7} {'growth':>7}")
    for label, (idle, peak) in memory.items():
        print(
            f"{label + f', 8 x {mid_mib} MiB':44} {idle / 1024:7.1f} {peak / 1024:7.1f}"
            f" {(peak - idle) / 1024:7.1f}"
        )
    print()
    print(
        f"{'resume after a cut at half-way (8 MiB PATCHes)':44} {'cut at':>10} {'resumed':>10}"
        f" {'resent':>10}"
    )
    for name, cost in resume.items():
        print(
            f"{name:44} {cost.cut_at / MIB:7.2f}MiB {cost.resumed_at / MIB:7.2f}MiB"
            f" {cost.extra_bytes / MIB:7.2f}MiB  ({cost.answers})"
        )

    multipart = best["multipart_local"]
    print(
        "\nfloors: what storing each PATCH before answering costs on this machine, whoever the"
        " server\n"
        f"{'one part at a time / direct boto3 time (S3)':48} "
        f"{best['parts_s3_8'] / best['direct']:8.2f}\n"
        f"{'tus 8 MiB S3 time / one part at a time':48} "
        f"{best['tus_s3_8'] / best['parts_s3_8']:8.2f}"
    )
    for chunk_mib, cost in syncs.items():
        floor, tus_time = multipart + cost, best[f"tus_local_{chunk_mib}"]
        print(
            f"{f'fdatasync every {chunk_mib} MiB adds, s':48} {cost:8.2f}"
            f"  (multipart / (multipart + that) = {multipart / floor:.2f};"
            f" (multipart + that) / tus {chunk_mib} MiB = {floor / tus_time:.2f})"
        )
    goals = [
        ("tus 8 MiB local / multipart throughput", multipart / best["tus_local_8"], ">=", 0.85),
        ("tus 1 MiB local / multipart throughput", multipart / best["tus_local_1"], ">=", 0.60),
        ("tus 8 MiB S3 time / direct boto3 time", best["tus_s3_8"] / best["direct"], "<=", 1.30),
        ("tus 1 MiB S3 time / direct boto3 time", best["tus_s3_1"] / best["direct"], "<=", 1.30),
    ]
    for backend in ("s3", "local"):
        for patch_mib in (8, 1):
            idle, peak = memory[f"{backend}, tus {patch_mib} MiB PATCHes"]
            goals.append(
                (
                    f"RSS growth, 8 tus uploads ({backend}, {patch_mib} MiB), MiB",
                    (peak - idle) / 1024,
                    "<=",
                    80,
                )
            )
    for name, cost in resume.items():
        goals.append(
            (f"bytes sent again after the cut ({name}), MiB", cost.extra_bytes / MIB, "<=", 8)
        )
    print(f"\n{'goal':48} {'value':>8} {'goal':>9}  result")
    for label, value, sense, goal in goals:
        met = value >= goal if sense == ">=" else value <= goal
        print(
            f"{label:48} {value:8.2f} {sense + ' ' + format(goal, '.2f'):>9}  "
            f"{'pass' if met else 'MISS'}"
        )


if __name__ == "__main__":
    main()

"""Stock tus clients against real server processes: tus-js-client under Node, tuspy, a resume
after SIGKILL of the server, and two servers sharing one upload.

Every test ends with what a user would check: the document the upload became has the file's
sha256 and size, exactly one classify job exists for it, and storage holds that object and
nothing else (no partial file, no open S3 multipart upload, no tail object).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.tus_clients import ClientProcess, Event, node_argv, run_client, tuspy_argv
from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken, server_env
from tests.fixtures.network import TcpProxy
from tests.fixtures.s3 import TEST_REGION
from upload_service.db.models import Document, Job

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
TUS = "/v1/uploads/tus"
OCTET_STREAM = "application/offset+octet-stream"
# The live-server fixture's command, spelled out so that a restart can take the same port.
UVICORN = "-m uvicorn upload_service.main:app --host 127.0.0.1 --port {port} --no-access-log"
UVICORN_ARGV = [sys.executable, *UVICORN.split()]
FILE_SIZE = 12 * MIB  # Two S3 parts of at least 5 MiB and a tail, or twelve 1 MiB PATCHes.


@dataclass
class Backend:
    """The storage the servers of one test share, and how to list what it holds."""

    env: dict[str, str]
    stored: Callable[[], list[str]]  # Every object or file, and every open multipart upload.


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        root = tmp_path / "storage"

        def files() -> list[str]:
            return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())

        return Backend({"STORAGE_BACKEND": "local", "LOCAL_STORAGE_DIR": str(root)}, files)
    moto_server: str = request.getfixturevalue("moto_server")
    bucket: str = request.getfixturevalue("s3_bucket")
    s3: S3Client = request.getfixturevalue("s3_client")

    def objects() -> list[str]:
        keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return sorted(keys) + [f"multipart upload of {upload['Key']}" for upload in uploads]

    env = {
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": moto_server,
        "S3_REGION": TEST_REGION,
    }
    return Backend(env, objects)


@pytest.fixture
def tus_env(backend: Backend, pg_url: str, pg_clean: AsyncEngine) -> dict[str, str]:
    """Settings of every server process of a test: the run's PostgreSQL, the backend's storage.

    No worker: the classify job stays queued, so the test counts exactly the jobs recorded.
    """
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": pg_url,
        "JWT_SECRET": TEST_SECRET,
        "WORKER_ENABLED": "false",
        "LOG_LEVEL": "WARNING",
        "UPLOAD_RATE_LIMIT": "100000/minute",
        "QUERY_RATE_LIMIT": "100000/minute",
        **backend.env,
    }


@pytest.fixture
def token(make_token: MakeToken) -> str:
    """A user of the test's own, so no other test's unfinished uploads count against its cap."""
    return make_token(f"tus-{uuid.uuid4().hex[:12]}")


def is_event(kind: str) -> Callable[[Event], bool]:
    return lambda event: event["event"] == kind


def patch_from(fraction: float) -> Callable[[Event], bool]:
    """A PATCH about to be sent from `fraction` of the file or further."""
    return lambda event: (
        event["event"] == "request"
        and event["method"] == "PATCH"
        and event["offset"] >= fraction * FILE_SIZE
    )


def sample_pdf(path: Path, size: int = FILE_SIZE) -> Path:
    """A file that sniffs as a PDF, random after its header: a chunk sent to the wrong offset,
    or twice, changes its sha256."""
    path.write_bytes(b"%PDF-1.4\n%" + os.urandom(size - 10))
    return path


def tus_headers(token: str, **more: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Tus-Resumable": "1.0.0", **more}


async def assert_one_document(
    base_url: str, upload_url: str, token: str, file: Path, engine: AsyncEngine, backend: Backend
) -> None:
    """The finished upload is one document with the file's bytes and exactly one classify job."""
    head = httpx.head(f"{base_url}{httpx.URL(upload_url).path}", headers=tus_headers(token))
    assert head.status_code == 200, head.text
    content = file.read_bytes()
    assert int(head.headers["Upload-Offset"]) == len(content)
    location = head.headers["Document-Location"]
    document = httpx.get(f"{base_url}{location}", headers=tus_headers(token))
    assert document.status_code == 200, document.text
    body = document.json()
    assert body["sha256"] == hashlib.sha256(content).hexdigest()
    assert body["size_bytes"] == len(content)
    assert body["filename"] == file.name
    assert body["content_type"] == "application/pdf"
    async with engine.connect() as conn:
        documents = (await conn.execute(select(Document.id))).scalars().all()
        jobs = (await conn.execute(select(Job.doc_id).where(Job.kind == "classify"))).all()
    assert documents == [body["doc_id"]]
    assert [doc_id for (doc_id,) in jobs] == [body["doc_id"]]
    # The document's object, and nothing left of the partial upload.
    assert backend.stored() == [body["storage_key"]]


@pytest.mark.parametrize("chunk_size", [MIB, None], ids=["1MiB-chunks", "one-chunk"])
async def test_tus_js_client_uploads_a_file(
    live_server: Callable[..., LiveServer],
    tus_env: dict[str, str],
    backend: Backend,
    pg_clean: AsyncEngine,
    token: str,
    tmp_path: Path,
    chunk_size: int | None,
) -> None:
    server = live_server(tus_env)
    file = sample_pdf(tmp_path / "report.pdf")
    argv = node_argv(f"{server.url}{TUS}", file, token, chunk_size=chunk_size, retry_delays=[])
    client = run_client(argv, tmp_path / "node.log")

    patches = [event for event in client.of("request") if event["method"] == "PATCH"]
    assert len(patches) == (FILE_SIZE // MIB if chunk_size else 1)
    assert [event["offset"] for event in client.of("chunk")][-1] == FILE_SIZE
    [success] = client.of("success")
    assert success["document_location"], "the final PATCH names the document"
    await assert_one_document(server.url, success["url"], token, file, pg_clean, backend)


@pytest.mark.parametrize("backend", ["local"], indirect=True)
async def test_tus_js_client_sends_data_with_creation_and_patches_as_overridden_posts(
    live_server: Callable[..., LiveServer],
    tus_env: dict[str, str],
    backend: Backend,
    pg_clean: AsyncEngine,
    token: str,
    tmp_path: Path,
) -> None:
    server = live_server(tus_env)
    file = sample_pdf(tmp_path / "letter.pdf")
    argv = node_argv(
        f"{server.url}{TUS}",
        file,
        token,
        chunk_size=4 * MIB,
        retry_delays=[],
        creation_with_upload=True,
        override_patch_method=True,
    )
    client = run_client(argv, tmp_path / "node.log")

    # The first 4 MiB come with the creation; the rest are POSTs that say they are PATCHes.
    creation = next(e for e in client.of("response") if e["method"] == "POST")
    assert (creation["status"], creation["offset"]) == (201, 4 * MIB)
    patches = [e["offset"] for e in client.of("request") if e["method"] == "PATCH"]
    assert patches == [4 * MIB, 8 * MIB]
    [success] = client.of("success")
    await assert_one_document(server.url, success["url"], token, file, pg_clean, backend)


async def test_tuspy_uploads_with_checksums(
    live_server: Callable[..., LiveServer],
    tus_env: dict[str, str],
    backend: Backend,
    pg_clean: AsyncEngine,
    token: str,
    tmp_path: Path,
) -> None:
    server = live_server(tus_env)
    file = sample_pdf(tmp_path / "scan.pdf")
    client = run_client(
        tuspy_argv(f"{server.url}{TUS}", file, token, chunk_size=2 * MIB), tmp_path / "tuspy.log"
    )
    assert [event["offset"] for event in client.of("chunk")] == list(
        range(2 * MIB, FILE_SIZE + 1, 2 * MIB)
    )
    [success] = client.of("success")
    await assert_one_document(server.url, success["url"], token, file, pg_clean, backend)


async def test_upload_resumes_in_a_new_client_after_the_server_is_killed_at_40_percent(
    live_server: Callable[..., LiveServer],
    tus_env: dict[str, str],
    backend: Backend,
    pg_clean: AsyncEngine,
    token: str,
    tmp_path: Path,
) -> None:
    first = live_server(tus_env, argv=UVICORN_ARGV)
    file = sample_pdf(tmp_path / "contract.pdf")
    # A slow network between client and server (2 MiB/s): a 1 MiB PATCH is always on its way,
    # so the kill lands in the middle of one, its lease held by the process that dies.
    network = TcpProxy("127.0.0.1", first.port)
    await network.start()
    network.throttle_bytes_s = 2 * MIB
    endpoint = f"http://127.0.0.1:{network.port}{TUS}"
    try:
        slow = ClientProcess(
            node_argv(endpoint, file, token, chunk_size=MIB, retry_delays=[]),
            tmp_path / "node-first.log",
        )
        try:
            url = (await asyncio.to_thread(slow.wait_for, is_event("url"), 30))["url"]
            await asyncio.to_thread(slow.wait_for, patch_from(0.4), 60)
            await asyncio.sleep(0.25)  # Half of the 1 MiB this PATCH sends at 2 MiB/s.
            # The server dies with the client; nothing of either is left to help.
            first.process.kill()
        finally:
            slow.kill()
        first.process.wait(10)
        acknowledged = max(event["offset"] for event in slow.of("chunk"))
        assert 0 < acknowledged < FILE_SIZE

        # A new server process on the same database, storage and address (a restarted pod),
        # and a new client that knows only the upload URL. The dead process's lease lapses
        # within seconds: until then the server answers 423, which tus-js-client retries.
        network.throttle_bytes_s = None
        (tmp_path / "second").mkdir()
        argv = [part.replace("{port}", str(first.port)) for part in UVICORN_ARGV]
        second = LiveServer(argv, server_env(tus_env), first.port, tmp_path / "second")
        try:
            second.wait_ready()
            argv = node_argv(
                endpoint,
                file,
                token,
                chunk_size=MIB,
                upload_url=url,
                retry_delays=[500, 1000, 2000, 3000, 5000, 8000],
            )
            resumed = await asyncio.to_thread(run_client, argv, tmp_path / "node-second.log")
            requests = resumed.of("request")
            assert "POST" not in [event["method"] for event in requests], "a new upload"
            first_patch = next(event for event in requests if event["method"] == "PATCH")
            # Every byte the killed server acknowledged was durable; the PATCH in flight at
            # most is sent again.
            assert first_patch["offset"] >= acknowledged
            assert resumed.of("progress")[0]["offset"] >= acknowledged
            await assert_one_document(second.url, url, token, file, pg_clean, backend)
        finally:
            second.stop()
    finally:
        await network.stop()


async def test_two_server_processes_serve_alternate_patches_of_one_upload(
    live_server: Callable[..., LiveServer],
    tus_env: dict[str, str],
    backend: Backend,
    pg_clean: AsyncEngine,
    token: str,
    tmp_path: Path,
) -> None:
    servers = [live_server(tus_env), live_server(tus_env)]
    file = sample_pdf(tmp_path / "invoice.pdf")
    content = file.read_bytes()
    metadata = f"filename {base64.b64encode(file.name.encode()).decode()}"
    creation = {"Upload-Length": str(len(content)), "Upload-Metadata": metadata}
    created = httpx.post(f"{servers[0].url}{TUS}", headers=tus_headers(token, **creation))
    assert created.status_code == 201, created.text
    path = httpx.URL(created.headers["Location"]).path

    with httpx.Client(timeout=30) as http:
        for number, offset in enumerate(range(0, len(content), MIB)):
            server = servers[number % 2]
            # Each process sees the offset the other one saved.
            head = http.head(f"{server.url}{path}", headers=tus_headers(token))
            assert int(head.headers["Upload-Offset"]) == offset, (number, head.headers)
            chunk = content[offset : offset + MIB]
            patch = {"Upload-Offset": str(offset), "Content-Type": OCTET_STREAM}
            answer = http.patch(
                f"{server.url}{path}", content=chunk, headers=tus_headers(token, **patch)
            )
            assert answer.status_code == 204, (number, answer.text)
            assert int(answer.headers["Upload-Offset"]) == offset + len(chunk)
    assert "Document-Location" in answer.headers
    # Either process may be asked about the result.
    await assert_one_document(servers[0].url, path, token, file, pg_clean, backend)

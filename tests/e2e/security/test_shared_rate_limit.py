"""Two gunicorn workers sharing Redis spend one upload budget, whichever worker answers.

Each upload goes over a new connection; the worker that accepted it is read from the kernel's
socket table (`/proc/net/tcp` and the workers' open sockets). Which worker accepts is up to the
kernel, so the test pauses one worker (SIGSTOP, then SIGCONT, by pid) to make the other answer:
the budget is then spent on one worker and refused by the other, deterministically.
"""

from __future__ import annotations

import http.client
import os
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.e2e.gunicorn import gunicorn_argv, wait_for_workers
from tests.fixtures.app import TEST_SECRET, LiveServer
from tests.integration.documents.conftest import MULTIPART, multipart, pdf_bytes
from upload_service.edge.auth import mint_token

pytestmark = pytest.mark.e2e


def _socket_inode(server_port: int, client_port: int) -> str | None:
    # /proc/net/tcp: "sl local_address rem_address st ... uid timeout inode"; ports in hex.
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if int(local.split(":")[1], 16) == server_port and (
            int(remote.split(":")[1], 16) == client_port
        ):
            return inode
    return None


def serving_worker(server_port: int, client_port: int, workers: set[int]) -> int | None:
    """The worker pid holding the server side of the connection from `client_port`."""
    inode = _socket_inode(server_port, client_port)
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                if fd.readlink().as_posix() == target:
                    return pid
            except OSError:
                continue  # The fd closed while we looked.
    return None


def test_two_workers_sharing_redis_enforce_one_upload_budget(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
) -> None:
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    server = live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "RATE_LIMIT_STORAGE_URL": redis_url,
            "RATE_LIMIT_KEY_PREFIX": redis_prefix,
            "UPLOAD_RATE_LIMIT": "4/minute",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        argv=gunicorn_argv(workers=2),
    )
    workers = wait_for_workers(server.process.pid, 2)
    token = mint_token(TEST_SECRET, f"user-{uuid.uuid4().hex[:8]}")
    body = multipart(("file", "a.pdf", pdf_bytes()))
    headers = {"Authorization": f"Bearer {token}", "Content-Type": MULTIPART}

    def upload() -> tuple[int | None, int, str | None]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        try:
            conn.connect()
            assert conn.sock is not None
            client_port = conn.sock.getsockname()[1]
            # Asked before the request is sent: a refusal that comes before the body is read
            # closes the connection at once, so after the answer no worker holds the socket.
            pid = None
            for _ in range(100):  # The worker accepts within moments; bounded at 5 s.
                pid = serving_worker(server.port, client_port, workers)
                if pid is not None:
                    break
                time.sleep(0.05)
            conn.request("POST", "/v1/documents", body=body, headers=headers)
            response = conn.getresponse()
            response.read()
            return pid, response.status, response.getheader("X-RateLimit-Remaining")
        finally:
            conn.close()

    first = [upload(), upload()]  # Whichever worker the kernel picks.
    x = first[-1][0]
    assert x in workers
    (y,) = workers - {x}
    with paused(x):
        on_y = [upload(), upload(), upload()]  # Only y can accept now.
    with paused(y):
        on_x = [upload()]  # Only x can accept now.

    answers = first + on_y + on_x
    assert [pid for pid, _, _ in on_y] == [y, y, y], answers
    assert [pid for pid, _, _ in on_x] == [x], answers
    # Together the two workers granted the budget once, then both refused; with a budget per
    # worker, y (and x) would each have accepted up to four.
    assert [status for _, status, _ in answers] == [202, 202, 202, 202, 429, 429], answers
    assert [remaining for _, _, remaining in answers] == ["3", "2", "1", "0", "0", "0"]


@contextmanager
def paused(pid: int) -> Iterator[None]:
    """Stop one of our gunicorn workers for a moment, so the other accepts every connection."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)

"""Graceful shutdown under gunicorn: SIGTERM drains in-flight uploads; a killed worker returns."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.e2e.gunicorn import (
    GRACEFUL_TIMEOUT_S,
    gunicorn_argv,
    gunicorn_env,
    log_entries,
    process_exists,
    wait_for_log,
    wait_for_workers,
)
from tests.fixtures.app import LiveServer, MakeToken
from tests.integration.documents.conftest import BOUNDARY, MULTIPART, multipart, pdf_bytes
from upload_service.db.models import Document

pytestmark = pytest.mark.e2e

STARTED = "Application startup complete."


def read_response(sock: socket.socket) -> tuple[int, bytes]:
    """Status and raw bytes of one HTTP/1.1 response read until the server closes."""
    received = b""
    deadline = time.monotonic() + GRACEFUL_TIMEOUT_S + 5
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    status = int(received.split(b" ", 2)[1]) if received else 0
    return status, received


async def test_upload_in_flight_at_sigterm_completes_and_is_stored(
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: AsyncEngine,
    pg_url: str,
    tmp_path: Path,
) -> None:
    server = live_server(gunicorn_env(pg_url, tmp_path), argv=gunicorn_argv(workers=2))
    wait_for_log(server.log, STARTED, count=2)
    content = pdf_bytes(pad=256 * 1024)
    body = multipart(("file", "slow.pdf", content), boundary=BOUNDARY)
    head = (
        "POST /v1/documents HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {make_token('alice')}\r\n"
        f"Content-Type: {MULTIPART}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()

    with socket.create_connection(("127.0.0.1", server.port), timeout=GRACEFUL_TIMEOUT_S) as sock:
        sock.sendall(head + body[:1000])
        time.sleep(0.3)  # The request is now in a worker, its body half-sent.
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # Each worker notices the signal at once (readiness 503 from now on) ...
        wait_for_log(server.log, "termination signal: draining", count=1, timeout_s=5)
        # ... and the client keeps sending, slowly, for about a second.
        rest = body[1000:]
        step = len(rest) // 10 + 1
        for offset in range(0, len(rest), step):
            sock.sendall(rest[offset : offset + step])
            time.sleep(0.1)
        status, response = read_response(sock)

    assert status == 202, response[:500]
    exit_code = server.process.wait(GRACEFUL_TIMEOUT_S + 5)
    assert exit_code == 0
    assert time.monotonic() - signalled < GRACEFUL_TIMEOUT_S

    async with pg_clean.connect() as conn:
        stored = (await conn.execute(select(Document.id, Document.size_bytes))).all()
    assert [size for _, size in stored] == [len(content)]
    [blob] = list((tmp_path / "storage").rglob("*.pdf"))
    assert blob.read_bytes() == content
    messages = [entry["message"] for entry in log_entries(server.log)]
    assert "Waiting for application shutdown." in messages


def test_killed_worker_is_replaced_and_the_service_keeps_answering(
    live_server: Callable[..., LiveServer],
    make_token: MakeToken,
    pg_clean: AsyncEngine,
    pg_url: str,
    tmp_path: Path,
) -> None:
    server = live_server(gunicorn_env(pg_url, tmp_path), argv=gunicorn_argv(workers=2))
    wait_for_log(server.log, STARTED, count=2)
    before = wait_for_workers(server.process.pid, 2)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)

    headers = {"Authorization": f"Bearer {make_token('alice')}"}
    # The survivor answers while the master replaces the dead worker.
    for _ in range(5):
        assert httpx.get(f"{server.url}/v1/documents", headers=headers).status_code == 200
    wait_for_log(server.log, STARTED, count=3)
    after = wait_for_workers(server.process.pid, 2)
    assert victim not in after
    assert not process_exists(victim)
    for _ in range(10):
        assert httpx.get(f"{server.url}/v1/documents", headers=headers).status_code == 200

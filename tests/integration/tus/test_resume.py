"""A real server process and a connection cut mid-PATCH: what arrived stays, the lock goes.

A raw socket sends the PATCH's headers and part of its body, then closes: the way a phone on a
train loses its upload. The server keeps what it received, says so in HEAD, and lets the
client's next PATCH in at once (not after the lease lapses).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.fixtures.app import TEST_SECRET, LiveServer, MakeToken
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.tus.conftest import OFFSET_STREAM, TUS, metadata
from upload_service.db.uploads import LEASE_S

CONTENT = pdf_bytes(pad=3 * 1024 * 1024)
SENT_BEFORE_CUT = 1024 * 1024


@pytest.fixture
def server(
    live_server: Callable[..., LiveServer],
    pg_clean: AsyncEngine,
    database_env: dict[str, str],
    tmp_path: Path,
) -> LiveServer:
    return live_server(
        {
            "ENVIRONMENT": "test",
            **database_env,  # Through PgBouncer in that pass, with the direct LISTEN connection.
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            "LOG_LEVEL": "WARNING",
        }
    )


def create(server: LiveServer, auth: dict[str, str]) -> str:
    response = httpx.post(
        f"{server.url}/v1/uploads/tus",
        headers={
            **auth,
            **TUS,
            "Upload-Length": str(len(CONTENT)),
            "Upload-Metadata": metadata(filename="big.pdf"),
        },
        timeout=10,
    )
    assert response.status_code == 201, response.text
    return str(response.headers["location"])


def cut_patch(server: LiveServer, token: str, location: str, offset: int, send: int) -> None:
    """Send a PATCH declaring the rest of the file, `send` bytes of it, then hang up."""
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_STREAM}\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {len(CONTENT) - offset}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head + CONTENT[offset : offset + send])
        time.sleep(1.0)  # The server reads what was sent before the line drops.


def offset_of(server: LiveServer, auth: dict[str, str], location: str) -> int:
    response = httpx.head(f"{server.url}{location}", headers={**auth, **TUS}, timeout=10)
    assert response.status_code == 200
    return int(response.headers["upload-offset"])


def stored_offset(server: LiveServer, auth: dict[str, str], location: str) -> int:
    """The offset once the cut PATCH has saved and let go (bounded wait)."""
    deadline = time.monotonic() + 5
    offset = offset_of(server, auth, location)
    while offset == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
        offset = offset_of(server, auth, location)
    return offset


def test_a_cut_connection_keeps_what_arrived_and_the_offset_says_how_much(
    server: LiveServer, make_token: MakeToken, tmp_path: Path
) -> None:
    token = make_token("user-a")
    auth = {"Authorization": f"Bearer {token}"}
    location = create(server, auth)
    cut_patch(server, token, location, 0, SENT_BEFORE_CUT)
    offset = stored_offset(server, auth, location)
    # Everything that arrived was kept (the pause let the server read it all).
    assert offset == SENT_BEFORE_CUT
    [partial] = [p for p in (tmp_path / "storage" / ".partial").rglob("*") if p.is_file()]
    assert partial.read_bytes() == CONTENT[:offset]
    # The client resumes from the server's offset and the document is the whole file.
    done = httpx.patch(
        f"{server.url}{location}",
        content=CONTENT[offset:],
        headers={**auth, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset)},
        timeout=30,
    )
    assert done.status_code == 204, done.text
    document = httpx.get(
        f"{server.url}{done.headers['document-location']}", headers=auth, timeout=10
    ).json()
    assert document["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert document["size_bytes"] == len(CONTENT)


def test_the_lock_of_a_cut_connection_is_let_go_at_once_not_when_it_lapses(
    server: LiveServer, make_token: MakeToken
) -> None:
    token = make_token("user-a")
    auth = {"Authorization": f"Bearer {token}"}
    location = create(server, auth)
    cut_patch(server, token, location, 0, 300_000)
    started = time.monotonic()
    statuses: list[int] = []
    # Bounded: at most LEASE_S seconds of polling, 0.1 s apart.
    while time.monotonic() - started < LEASE_S:
        offset = offset_of(server, auth, location)
        response = httpx.patch(
            f"{server.url}{location}",
            content=CONTENT[offset : offset + 1000],
            headers={**auth, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": str(offset)},
            timeout=10,
        )
        statuses.append(response.status_code)
        if response.status_code == 204:
            break
        time.sleep(0.1)
    assert statuses[-1] == 204, statuses
    assert time.monotonic() - started < LEASE_S / 2, "the lease was waited out, not released"


def answer_without_sending_the_body(
    server: LiveServer, token: str, location: str, offset: int
) -> tuple[bytes, bool]:
    """Send a PATCH's headers (declaring 8 MiB) and none of its body: the answer's head, and
    whether the server then hung up (within a bounded wait)."""
    head = (
        f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Tus-Resumable: 1.0.0\r\nContent-Type: {OFFSET_STREAM}\r\nUpload-Offset: {offset}\r\n"
        f"Content-Length: {8 * 1024 * 1024}\r\n\r\n"
    ).encode()
    received = b""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except TimeoutError:
                return received, False  # Still open: the server waits for the body.
            if not data:
                return received, True
            received += data
    return received, False


def test_a_patch_refused_before_its_body_closes_the_connection_so_the_body_is_not_sent(
    server: LiveServer, make_token: MakeToken
) -> None:
    token = make_token("user-a")
    auth = {"Authorization": f"Bearer {token}"}
    location = create(server, auth)
    answer, hung_up = answer_without_sending_the_body(server, token, location, 1000)
    head = answer.split(b"\r\n\r\n", 1)[0].lower()
    assert head.startswith(b"http/1.1 409"), answer
    assert b"\r\nconnection: close" in head
    assert hung_up, "the server kept the connection to read a body nobody needs"
    # A PATCH whose body was read keeps its connection for the next one.
    with httpx.Client(base_url=server.url, timeout=10) as client:
        headers = {**auth, **TUS, "Content-Type": OFFSET_STREAM, "Upload-Offset": "0"}
        saved = client.patch(location, content=CONTENT[:1000], headers=headers)
        assert saved.status_code == 204, saved.text
        assert "connection" not in saved.headers

"""Early rejection over real HTTP: a tokenless 20 MB upload is refused after a sliver of its body.

A raw socket sends the body slowly (64 KiB every 10 ms) and watches for the answer between
chunks, so the bytes sent before the 401 arrives measure how much the server let in.
"""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.app import TEST_SECRET, LiveServer

pytestmark = pytest.mark.e2e

BODY_BYTES = 20 * 1024 * 1024
CHUNK = 64 * 1024
PAUSE_S = 0.01
ALLOWED = "https://app.example.com"


def throttled_upload(port: int, extra_headers: str) -> tuple[int, bytes]:
    """Send a 20 MB upload slowly; the body bytes sent before any answer, and the answer."""
    head = (
        "POST /v1/documents HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{port}\r\n"
        "Content-Type: multipart/form-data; boundary=xyz\r\n"
        f"Content-Length: {BODY_BYTES}\r\n"
        f"{extra_headers}"
        "\r\n"
    ).encode()
    chunk = b"--xyz\r\n" + b"\0" * (CHUNK - 7)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        deadline = time.monotonic() + 30
        while sent < BODY_BYTES and time.monotonic() < deadline:
            readable, _, _ = select.select([sock], [], [], PAUSE_S)
            if readable:
                break  # The server has answered.
            try:
                sock.sendall(chunk)
            except OSError:
                break  # The server closed the connection on us: it will not read more.
            sent += len(chunk)
        return sent, _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    data = b""
    while b"\r\n\r\n" not in data:
        part = sock.recv(65536)
        if not part:
            return data
        data += part
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        part = sock.recv(65536)
        if not part:
            break
        body += part
    return head + b"\r\n\r\n" + body


def _headers(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    return status, headers, json.loads(body)


@pytest.mark.parametrize(
    ("case", "extra_headers"),
    [
        ("no-authorization", ""),
        ("not-bearer", "Authorization: Basic dXNlcjpwYXNz\r\n"),
        ("invalid-bearer-token", "Authorization: Bearer not.a.token\r\n"),
    ],
)
def test_unauthenticated_20mb_upload_is_refused_before_its_body(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    tmp_path: Path,
    case: str,
    extra_headers: str,
) -> None:
    server = live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "CORS_ALLOW_ORIGINS": ALLOWED,
        }
    )
    started = time.monotonic()
    sent, raw = throttled_upload(server.port, f"Origin: {ALLOWED}\r\n{extra_headers}")
    elapsed = time.monotonic() - started

    status, headers, body = _headers(raw)
    assert status == 401, raw[:500]
    assert body["error_code"] == "UNAUTHENTICATED"
    assert body["request_id"] == headers["x-request-id"]
    assert headers["www-authenticate"].startswith('Bearer realm="upload-service"')
    assert headers["access-control-allow-origin"] == ALLOWED
    # The answer came while at most a few chunks were on the wire: under 5% of the body.
    assert sent < BODY_BYTES // 20, f"{case}: {sent} bytes sent before the 401"
    assert elapsed < 5
    assert not list((tmp_path / "storage").rglob("*.pdf"))

"""Huge JSON bodies over real HTTP: refused before they are read, so the server's memory stays put.

A raw socket sends ~300 MB as fast as the server takes it and stops when the answer arrives. The
server's peak resident memory (`VmHWM`, reset through `/proc/<pid>/clear_refs` first) shows what
the request made it allocate: a forged token is 401 before the body, a verified caller's body
over `MAX_JSON_BODY_KB` is 413 whether its length is declared or it arrives chunked.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.raw_http import parse_response, request_head, send_until_answered
from tests.fixtures.app import TEST_SECRET, LiveServer
from upload_service.edge.auth import mint_token

pytestmark = pytest.mark.e2e

MIB = 1024 * 1024
HUGE = 300 * MIB
CHUNK = b" " * MIB  # Whitespace: a valid start of any JSON document.
# What one refused request may leave the process holding at its peak (parser buffers, one
# network read, the answer); the body itself would be hundreds of MiB.
ALLOWED_GROWTH = 8 * MIB
PATH = "/v1/documents/batch-check"


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def _reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # 5: reset the peak resident set size


def _send_json(
    port: int, token: str, size: int, *, chunked: bool
) -> tuple[int, int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    if chunked:
        headers["Transfer-Encoding"] = "chunked"
        chunk = b"%x\r\n" % len(CHUNK) + CHUNK + b"\r\n"
    else:
        headers["Content-Length"] = str(size)
        chunk = CHUNK
    head = request_head("POST", PATH, port, headers)
    sent, raw = send_until_answered(port, head, chunk, size, deadline_s=30)
    status, _, body = parse_response(raw)
    return sent, status, body


@pytest.fixture
def server(live_server: Callable[..., LiveServer], pg_url: str, tmp_path: Path) -> LiveServer:
    return live_server(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": pg_url,
            "JWT_SECRET": TEST_SECRET,
            "WORKER_ENABLED": "false",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
        }
    )


@pytest.mark.parametrize(
    ("case", "valid_token", "chunked", "status", "error_code"),
    [
        ("forged token", False, False, 401, "UNAUTHENTICATED"),
        ("forged token, chunked", False, True, 401, "UNAUTHENTICATED"),
        ("declared length over the limit", True, False, 413, "FILE_TOO_LARGE"),
        ("chunked past the limit", True, True, 413, "FILE_TOO_LARGE"),
    ],
)
def test_a_300mb_json_body_is_refused_without_being_read(
    server: LiveServer,
    case: str,
    valid_token: bool,
    chunked: bool,
    status: int,
    error_code: str,
) -> None:
    token = mint_token(TEST_SECRET, "user-a") if valid_token else "garbage"
    pid = server.process.pid
    # Warm up the path (imports, caches, first allocations) with a small body of the same kind.
    _send_json(server.port, token, 2 * MIB, chunked=chunked)
    before = _status_kib(pid, "VmRSS")
    _reset_peak(pid)

    sent, answered, body = _send_json(server.port, token, HUGE, chunked=chunked)

    assert answered == status, f"{case}: {body}"
    assert body["error_code"] == error_code
    if status == 413:
        assert body["details"] == {"max_bytes": 64 * 1024}
    peak = _status_kib(pid, "VmHWM")
    assert peak - before < ALLOWED_GROWTH, (
        f"{case}: peak RSS grew by {(peak - before) / MIB:.1f} MiB"
    )
    assert sent < HUGE // 20, f"{case}: {sent} bytes sent before the answer"

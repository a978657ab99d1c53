"""Early rejection over real HTTP: a tokenless 20 MB upload is refused after a sliver of its body.

A raw socket sends the body slowly (64 KiB every 10 ms) and watches for the answer between
chunks, so the bytes sent before the 401 arrives measure how much the server let in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.e2e.raw_http import parse_response, request_head, send_until_answered
from tests.fixtures.app import TEST_SECRET, LiveServer

pytestmark = pytest.mark.e2e

BODY_BYTES = 20 * 1024 * 1024
CHUNK = 64 * 1024
PAUSE_S = 0.01
ALLOWED = "https://app.example.com"


def throttled_upload(port: int, extra_headers: dict[str, str]) -> tuple[int, bytes]:
    """Send a 20 MB upload slowly; the body bytes sent before any answer, and the answer."""
    head = request_head(
        "POST",
        "/v1/documents",
        port,
        {
            "Content-Type": "multipart/form-data; boundary=xyz",
            "Content-Length": str(BODY_BYTES),
            **extra_headers,
        },
    )
    chunk = b"--xyz\r\n" + b"\0" * (CHUNK - 7)
    return send_until_answered(port, head, chunk, BODY_BYTES, pause_s=PAUSE_S)


@pytest.mark.parametrize(
    ("case", "extra_headers"),
    [
        ("no-authorization", {}),
        ("not-bearer", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("invalid-bearer-token", {"Authorization": "Bearer not.a.token"}),
    ],
)
def test_unauthenticated_20mb_upload_is_refused_before_its_body(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    tmp_path: Path,
    case: str,
    extra_headers: dict[str, str],
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
    sent, raw = throttled_upload(server.port, {"Origin": ALLOWED, **extra_headers})
    elapsed = time.monotonic() - started

    status, headers, body = parse_response(raw)
    assert status == 401, raw[:500]
    assert body["error_code"] == "UNAUTHENTICATED"
    assert body["request_id"] == headers["x-request-id"]
    assert headers["www-authenticate"].startswith('Bearer realm="upload-service"')
    assert headers["access-control-allow-origin"] == ALLOWED
    # The answer came while at most a few chunks were on the wire: under 5% of the body.
    assert sent < BODY_BYTES // 20, f"{case}: {sent} bytes sent before the 401"
    assert elapsed < 5
    assert not list((tmp_path / "storage").rglob("*.pdf"))

"""Helpers for the tests that run the production server: gunicorn with uvicorn workers."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from tests.fixtures.app import TEST_SECRET

REPO = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO / "gunicorn.conf.py"
GRACEFUL_TIMEOUT_S = 10


def gunicorn_argv(workers: int = 2) -> list[str]:
    """The Dockerfile's command, bound to the test's free port on 127.0.0.1."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONF),
        "--bind",
        "127.0.0.1:{port}",
        "--workers",
        str(workers),
        "upload_service.main:app",
    ]


def gunicorn_env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """Production-like settings on the test database, metrics in a folder of the test's."""
    return {
        "ENVIRONMENT": "test",
        "DATABASE_URL": pg_url,
        "STORAGE_BACKEND": "local",
        "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
        "JWT_SECRET": TEST_SECRET,
        "WORKER_ENABLED": "false",
        "LOG_FORMAT": "json",
        "QUERY_RATE_LIMIT": "100000/minute",
        "UPLOAD_RATE_LIMIT": "100000/minute",
        "GUNICORN_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT_S),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }


def worker_pids(master_pid: int) -> set[int]:
    """The master's live child processes (its workers)."""
    children = Path(f"/proc/{master_pid}/task/{master_pid}/children")
    try:
        return {int(pid) for pid in children.read_text().split()}
    except FileNotFoundError:
        return set()


def wait_for_workers(master_pid: int, count: int, timeout_s: float = 20.0) -> set[int]:
    """Wait until the master has `count` workers; return their pids."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = worker_pids(master_pid)
        if len(pids) == count:
            return pids
        time.sleep(0.1)
    raise AssertionError(f"gunicorn has {worker_pids(master_pid)} workers, wanted {count}")


def process_exists(pid: int) -> bool:
    """Whether a process with this pid still runs (and is not a zombie)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def log_entries(log: Path) -> list[dict[str, Any]]:
    """The JSON lines of a server log (anything else, such as a crash dump, is skipped)."""
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return entries


def wait_for_log(log: Path, message: str, count: int, timeout_s: float = 20.0) -> None:
    """Wait until `message` was logged `count` times (say, once per worker started)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(entry.get("message") == message for entry in log_entries(log)) >= count:
            return
        time.sleep(0.1)
    raise AssertionError(f"{message!r} not logged {count} times:\n{log.read_text()[-3000:]}")

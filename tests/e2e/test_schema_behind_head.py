"""PostgreSQL whose schema is behind head: the service never migrates it by itself, says so once,
answers 503 with the reason, and carries on without a restart once `upload-service migrate` ran.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.e2e.test_serve import CLI, UVICORN, upload_and_wait_until_classified
from tests.e2e.test_workers import WorkerProcesses
from tests.fixtures.app import TEST_SECRET, LiveServer, server_env
from tests.integration.documents.conftest import pdf_bytes
from tests.integration.jobs.support import finished, store_document, wait_for_job
from tests.samples import PDF
from upload_service.db.session import create_engine, create_session_factory
from upload_service.edge.auth import mint_token
from upload_service.storage.local import LocalStorage

pytestmark = pytest.mark.e2e

BEHIND_LINE = "database schema not at head"
READINESS_CHECK = "error: schema not at head, run upload-service migrate"
# The worker asks again every 3 s: this long covers at least one more look while behind.
AFTER_ANOTHER_LOOK_S = 4.0


def settings_env(database_url: str, tmp_path: Path) -> dict[str, str]:
    env = server_env(
        {
            "ENVIRONMENT": "test",
            "DATABASE_URL": database_url,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "JWT_SECRET": TEST_SECRET,
            "JANITOR_INTERVAL_S": "0",
            "LOG_FORMAT": "console",
        }
    )
    for name in ("NOTIFICATION_URL", "CLASSIFIER_TARGET", "CLASSIFIER_TIMEOUT_S"):
        env.pop(name, None)  # The in-process classifier.
    return env


def migrate(env: dict[str, str], cwd: Path) -> None:
    subprocess.run([*CLI, "migrate"], env=env, cwd=cwd, check=True, timeout=60)


def wait_for_line(log: Path, text: str, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text(errors="replace"):
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{log.read_text()[-3000:]}"
        time.sleep(0.1)


def assert_said_once_and_quietly(log: Path) -> None:
    text = log.read_text(errors="replace")
    assert text.count(BEHIND_LINE) == 1, text
    assert "upload-service migrate" in text
    assert "Traceback" not in text, text


@pytest.fixture
async def unmigrated_sessions(
    pg_unmigrated_url: str,
) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(pg_unmigrated_url)
    yield create_session_factory(engine)
    await engine.dispose()


def test_the_app_waits_for_the_migration_and_then_serves_and_classifies(
    live_server: Callable[..., LiveServer], pg_unmigrated_url: str, tmp_path: Path
) -> None:
    env = settings_env(pg_unmigrated_url, tmp_path)
    server = live_server(env, argv=UVICORN)  # The in-process job worker included.
    headers = {"Authorization": f"Bearer {mint_token(TEST_SECRET, 'user-a')}"}

    ready = httpx.get(f"{server.url}/readiness")
    assert ready.status_code == 503
    assert ready.json()["checks"]["database"] == READINESS_CHECK
    upload = httpx.post(
        f"{server.url}/v1/documents", files={"file": ("a.pdf", pdf_bytes())}, headers=headers
    )
    assert upload.status_code == 503
    assert upload.json()["error_code"] == "SERVICE_UNAVAILABLE"
    assert "upload-service migrate" in upload.json()["message"]
    time.sleep(AFTER_ANOTHER_LOOK_S)
    assert_said_once_and_quietly(server.log)

    migrate(env, tmp_path)

    deadline = time.monotonic() + 15
    while httpx.get(f"{server.url}/readiness").status_code != 200:
        assert time.monotonic() < deadline, server.log.read_text()[-3000:]
        time.sleep(0.2)
    # The worker, held back until now, classifies the upload.
    assert upload_and_wait_until_classified(server.url)["status"] == "complete"
    assert_said_once_and_quietly(server.log)


async def test_the_worker_process_waits_quietly_for_the_migration_then_runs_jobs(
    pg_unmigrated_url: str,
    unmigrated_sessions: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    env = settings_env(pg_unmigrated_url, tmp_path)
    workers = WorkerProcesses(env, tmp_path)
    try:
        workers.start()
        log = tmp_path / "worker-0.log"
        wait_for_line(log, BEHIND_LINE)
        await asyncio.sleep(AFTER_ANOTHER_LOOK_S)
        assert workers.processes[0].poll() is None, log.read_text()
        assert_said_once_and_quietly(log)
        assert log.read_text().rstrip().endswith("until then"), "nothing logged while it waits"

        migrate(env, tmp_path)
        item = await store_document(
            unmigrated_sessions,
            LocalStorage(tmp_path / "storage"),
            pdf_bytes(),
            content_type=PDF,
        )
        assert item.task_id is not None
        job = await wait_for_job(unmigrated_sessions, item.task_id, finished, timeout_s=20)
        assert job.status == "succeeded", job.last_error
        assert_said_once_and_quietly(log)
    finally:
        assert workers.stop_all() == [0], workers.logs()

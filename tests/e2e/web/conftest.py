"""A real server process for the browser tests: development settings (so the page offers the
development sign-in), the run's PostgreSQL, local files, the in-process classifier and worker."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.app import LiveServer


@pytest.fixture
def page_server(
    live_server: Callable[..., LiveServer], pg_url: str, pg_clean: object, tmp_path: Path
) -> LiveServer:
    return live_server(
        {
            "ENVIRONMENT": "development",
            "DATABASE_URL": pg_url,
            "STORAGE_BACKEND": "local",
            "LOCAL_STORAGE_DIR": str(tmp_path / "storage"),
            "WORKER_ENABLED": "true",
            "CLASSIFIER_TARGET": "",
            "NOTIFICATION_URL": "",
            "LOG_LEVEL": "WARNING",
        }
    )

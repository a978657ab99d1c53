"""A real server process for the browser tests: development settings (so the page offers the
development sign-in), the run's PostgreSQL, local files (or S3 on moto), the in-process
classifier and worker."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fixtures.app import LiveServer
from tests.fixtures.s3 import running_moto


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


def s3_page_settings(pg_url: str, moto_server: str, bucket: str) -> dict[str, str]:
    """The page's server on S3 (moto): direct uploads offered unless the test says otherwise.

    Files over 1 MiB go as multipart uploads (whose parts are 8 MiB, S3's minimum being 5)."""
    return {
        "ENVIRONMENT": "development",
        "DATABASE_URL": pg_url,
        "STORAGE_BACKEND": "s3",
        "S3_BUCKET": bucket,
        "S3_ENDPOINT_URL": moto_server,
        "S3_REGION": "us-east-1",
        "DIRECT_SINGLE_MAX_MB": "1",
        "WORKER_ENABLED": "true",
        "CLASSIFIER_TARGET": "",
        "NOTIFICATION_URL": "",
        "LOG_LEVEL": "WARNING",
    }


@pytest.fixture
def direct_page_server(
    live_server: Callable[..., LiveServer],
    pg_url: str,
    pg_clean: object,
    moto_server: str,
    s3_bucket: str,
) -> LiveServer:
    return live_server(s3_page_settings(pg_url, moto_server, s3_bucket))


@pytest.fixture(scope="session")
def strict_cors_moto_server(
    aws_credentials: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A moto S3 server that answers browsers by each bucket's CORS rules alone, as S3 does
    (the shared one allows every origin everything)."""
    with running_moto(
        tmp_path_factory.mktemp("moto-cors"), {"MOTO_DISABLE_GLOBAL_CORS": "true"}
    ) as endpoint:
        yield endpoint

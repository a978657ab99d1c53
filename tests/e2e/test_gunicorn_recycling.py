"""gunicorn recycles its workers (max_requests): the metric files stay bounded, the counts exact."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.e2e.gunicorn import gunicorn_argv, gunicorn_env, log_entries
from tests.e2e.scrape import Samples, scraped
from tests.fixtures.app import LiveServer

pytestmark = pytest.mark.e2e

MAX_REQUESTS = 3
SENT = 15
WORKERS = 2
HEALTH_OK = frozenset({"method": "GET", "route": "/health", "status": "200"}.items())
# The live workers' counter and histogram files, and one accumulated file of each type.
FILE_BOUND = WORKERS * 2 + 2


def get(server: LiveServer, path: str) -> tuple[httpx.Response, int]:
    """The answer to a GET on a new connection, and how many connections went unanswered first.

    A connection that a retiring worker accepted and closed unanswered is gunicorn's race, not
    ours: send again.
    """
    for dropped in range(5):
        try:
            return httpx.get(f"{server.url}{path}", timeout=30), dropped
        except httpx.TransportError:
            continue
    pytest.fail(f"five requests in a row for {path} went unanswered")


def scrape(server: LiveServer) -> Samples:
    return scraped(get(server, "/metrics")[0].text)


def test_recycled_workers_leave_a_bounded_number_of_files_and_every_count(
    live_server: Callable[..., LiveServer], pg_url: str, tmp_path: Path
) -> None:
    env = gunicorn_env(pg_url, tmp_path)
    env |= {"GUNICORN_MAX_REQUESTS": str(MAX_REQUESTS), "GUNICORN_MAX_REQUESTS_JITTER": "0"}
    server = live_server(env, argv=gunicorn_argv(workers=WORKERS))
    metrics_dir = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    before = scrape(server).get(("http_requests_total", HEALTH_OK), 0.0)

    # A new connection each time, so the requests count towards recycling.
    dropped = 0
    for _ in range(SENT):
        answer, unanswered = get(server, "/health")
        assert answer.status_code == 200
        dropped += unanswered

    booted = [e for e in log_entries(server.log) if "Booting worker" in e.get("message", "")]
    assert len(booted) >= WORKERS + SENT // (MAX_REQUESTS * 2), "workers were not recycled"
    deadline = time.monotonic() + 30
    while len(list(metrics_dir.glob("*.db"))) > FILE_BOUND and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(list(metrics_dir.glob("*.db"))) <= FILE_BOUND, sorted(metrics_dir.iterdir())
    counted = scrape(server)[("http_requests_total", HEALTH_OK)] - before
    # Exact when no request was dropped; a dropped one may or may not have been handled.
    assert SENT <= counted <= SENT + dropped

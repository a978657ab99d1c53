"""Prometheus metrics: the series, the calls that record them, and the scrape's text.

Any layer may record (the jobs layer included), so this module imports no web framework. With
`PROMETHEUS_MULTIPROC_DIR` set (gunicorn sets it if the environment does not), prometheus-client
keeps each process's values in files there and a scrape adds up every process's, dead ones
included (see `metrics_files`). The metric objects are process-wide by nature (they are the
registry prometheus-client reads). `upload-service worker` has no HTTP API: it serves its
series on a port of its own (`WORKER_METRICS_BIND`) for Prometheus to scrape.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from upload_service.db.models import Job
from upload_service.observability.metrics_files import (
    DirectoryCollector,
    configured_directory,
    ensure_directory,
)

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

logger = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
# Anything else a client sends as a method is counted as OTHER, so it cannot mint series.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
QUEUE_DEPTH_TIMEOUT_S = 1.0
_MIB = 1024 * 1024

# In multiprocess mode each series below opens its process's file as it is created, so the
# directory must exist first, whichever process gets here first (entry points check it earlier
# to fail with one line; this is for every other way of importing the app).
ensure_directory()

HTTP_REQUESTS = Counter(
    "http_requests_total",
    "HTTP requests answered, by method, route template and status",
    ["method", "route", "status"],
)
HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "Time from the request's arrival to the end of its response",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
UPLOAD_BYTES = Counter("document_upload_bytes_total", "Bytes of accepted uploads")
UPLOAD_SIZE = Histogram(
    "document_upload_size_bytes",
    "Size of accepted uploads",
    buckets=(16 * 1024, 128 * 1024, _MIB, 4 * _MIB, 16 * _MIB, 50 * _MIB, 200 * _MIB),
)
JOBS = Counter(
    "jobs_total",
    "Job attempts finished, by kind and outcome (succeeded, retried, failed)",
    ["kind", "outcome"],
)


@dataclass(frozen=True, slots=True)
class RequestSeries:
    """The request counter and latency histogram of one method, route template and status."""

    count: Counter
    latency: Histogram

    def observe(self, duration_s: float) -> None:
        """Count one answered request and its latency."""
        self.count.inc()
        self.latency.observe(duration_s)


def request_series(method: str, route: str, status: int) -> RequestSeries:
    """The series a request with these labels is recorded in (cache it: resolving costs)."""
    if method not in KNOWN_METHODS:
        method = "OTHER"
    labels = (method, route, str(status))
    return RequestSeries(HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))


def observe_request(method: str, route: str, status: int, duration_s: float) -> None:
    """Count one answered request and its latency."""
    request_series(method, route, status).observe(duration_s)


def record_upload(size_bytes: int) -> None:
    """Count one accepted upload of `size_bytes` (call it once the document is stored)."""
    UPLOAD_BYTES.inc(size_bytes)
    UPLOAD_SIZE.observe(size_bytes)


TUS_REHASH = Counter(
    "tus_rehash_total",
    "Resumable uploads whose finished object was read back to hash it (no running check here)",
)


def record_tus_rehash() -> None:
    """Count one resumable upload verified by reading its finished object back."""
    TUS_REHASH.inc()


def record_job(kind: str, outcome: str) -> None:
    """Count one finished job attempt: `succeeded`, `retried` or `failed`."""
    JOBS.labels(kind, outcome).inc()


class _QueueDepth(Collector):
    def __init__(self, depth: Mapping[str, int]) -> None:
        self.depth = depth

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "job_queue_depth", "Jobs queued, and jobs running", labels=["status"]
        )
        for status in ("queued", "running"):
            gauge.add_metric([status], self.depth.get(status, 0))
        yield gauge


def _registry() -> CollectorRegistry:
    directory = configured_directory()
    if not directory:
        return REGISTRY
    registry = CollectorRegistry()
    registry.register(DirectoryCollector(directory))
    return registry


def render(queue_depth: Mapping[str, int] | None = None) -> bytes:
    """The Prometheus text exposition of every series, all worker processes included."""
    text = generate_latest(_registry())
    if queue_depth is not None:
        # Read from the database at scrape time: the same answer whichever worker is asked.
        extra = CollectorRegistry()
        extra.register(_QueueDepth(queue_depth))
        text += generate_latest(extra)
    return text


def start_metrics_server(host: str, port: int) -> WSGIServer:
    """Serve every series over HTTP from a thread (for a process without an HTTP API).

    Stop it with `shutdown()` then `server_close()`.
    """
    server, _thread = start_http_server(port, host, registry=_registry())
    return server


async def read_queue_depth(engine: AsyncEngine) -> dict[str, int] | None:
    """Jobs queued and running, from the jobs table; None when the database does not answer."""
    query = (
        select(Job.status, func.count())
        .where(Job.status.in_(("queued", "running")))
        .group_by(Job.status)
    )
    try:
        async with asyncio.timeout(QUEUE_DEPTH_TIMEOUT_S), engine.connect() as conn:
            rows = (await conn.execute(query)).all()
    except Exception:  # A scrape must answer even when the database does not.
        logger.warning("queue depth unavailable for /metrics", exc_info=True)
        return None
    return {str(status): int(count) for status, count in rows}

"""The job worker as a process of its own (`upload-service worker`): runs until SIGTERM or SIGINT.

`python -m upload_service.cli.worker_process` does the same with settings from the environment. With
`WORKER_METRICS_BIND` set it serves its metrics there, as it has no HTTP API of its own.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from upload_service.config import ConfigurationError, Settings, load_settings
from upload_service.events.outbox import JOBS_CHANNEL
from upload_service.jobs.queue import Backoff
from upload_service.jobs.worker import Worker
from upload_service.lifespan import open_resources, start_when_schema_at_head, stop_worker
from upload_service.observability.logging_setup import configure_logging
from upload_service.observability.metrics import start_metrics_server

logger = logging.getLogger(__name__)

# Below Kubernetes' default terminationGracePeriodSeconds (30 s): running jobs may finish, and
# what is left is released in time for another worker to take it at once.
SHUTDOWN_GRACE_S = 20.0


async def run_worker(
    settings: Settings,
    *,
    backoff: Backoff | None = None,
    shutdown_grace_s: float = SHUTDOWN_GRACE_S,
    stop: asyncio.Event | None = None,
) -> None:
    """Run a worker on its own resources until SIGTERM/SIGINT (or `stop` is set), then stop it."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stop.set)
    try:
        with _metrics_served(settings.worker_metrics_bind):
            async with open_resources(settings, wake_channels=(JOBS_CHANNEL,)) as resources:
                assert resources.sessions is not None
                assert resources.storage is not None
                assert resources.classifier is not None
                assert resources.http is not None
                worker = Worker(
                    resources.sessions,
                    resources.storage,
                    resources.classifier,
                    resources.http,
                    settings,
                    backoff=backoff,
                    wakeups=resources.wakeups,
                )
                starting = asyncio.create_task(start_when_schema_at_head(resources, worker))
                try:
                    await stop.wait()
                    logger.info("worker %s: stop requested", worker.worker_id)
                finally:
                    await stop_worker(worker, starting, shutdown_grace_s)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


@contextmanager
def _metrics_served(bind: str) -> Iterator[None]:
    """Serve /metrics on `host:port` while the worker runs (nothing when `bind` is empty)."""
    if not bind:
        yield
        return
    host, port = bind.rsplit(":", 1)
    server = start_metrics_server(host, int(port))
    logger.info("metrics served on http://%s/metrics", bind)
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    """Entry point of `python -m upload_service.cli.worker_process`."""
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        sys.exit(f"configuration error: {exc}")
    configure_logging(settings.effective_log_format, settings.log_level)
    asyncio.run(run_worker(settings))


if __name__ == "__main__":
    main()

"""gunicorn settings, read from the environment (the production entry point).

`gunicorn -c gunicorn.conf.py upload_service.main:app`. Every worker is a uvicorn event loop
that builds its own resources; the master only supervises, so the app is not preloaded.
"""

import logging
import multiprocessing
import os
import sys
import tempfile

from upload_service.config import ConfigurationError, load_settings
from upload_service.observability.logging_setup import logging_config

try:
    _settings = load_settings()
except ConfigurationError as exc:  # One clear line, not a traceback from a worker.
    sys.exit(f"configuration error: {exc}")

bind = os.environ.get("BIND", "0.0.0.0:8000")
# Async workers: one event loop per core serves many connections each.
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, multiprocessing.cpu_count()))))
worker_class = "uvicorn_worker.UvicornWorker"
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
# Below the pod's terminationGracePeriodSeconds (60 in deploy/kubernetes), minus the preStop
# pause, so a drain always completes before the kubelet's SIGKILL.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "40"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
# No control socket: it lives under $HOME, which a read-only container may not have.
control_socket_disable = True
# The heartbeat file on tmpfs: a container's overlay filesystem can stall the heartbeat.
_SHM = "/dev/shm"  # noqa: S108 - tmpfs for gunicorn's heartbeat, as its docs advise
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None

# The app writes one structured access line per request (route template, user, duration);
# gunicorn's and uvicorn's own loggers go through the same formatter.
accesslog = None
errorlog = "-"
loglevel = _settings.log_level.lower()
logconfig_dict = logging_config(_settings.effective_log_format, _settings.log_level)

# prometheus-client's multiprocess mode: every worker writes its values to files here and a
# scrape adds them up. It must be set before a worker imports prometheus_client, and exist.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="upload-service-metrics-")
# Only now: prometheus-client chooses its mode when first imported, and workers inherit it.
from upload_service.observability.metrics_files import (  # noqa: E402
    MetricsDirectoryError,
    clear_directory,
    compact_dead_process,
    ensure_directory,
)

try:
    ensure_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])
except MetricsDirectoryError as exc:  # One clear line, not a traceback from every worker.
    sys.exit(f"metrics directory error: {exc}")
# uvicorn cancels what is still running this long after SIGTERM, so the lifespan shutdown
# (job worker stop, connections closed) still runs before gunicorn's graceful_timeout kill.
UVICORN_GRACE_MARGIN_S = 5


def on_starting(server: object) -> None:
    """Start from no metrics files: a previous run's (a restarted container's) would add up.

    Only the files are removed, never the directory, which may be a volume's mount point.
    """
    clear_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def post_fork(server: object, worker: object) -> None:
    """Tune the uvicorn worker: bounded graceful shutdown, no duplicate access line."""
    config = getattr(worker, "config", None)
    if config is not None:
        config.timeout_graceful_shutdown = max(1, graceful_timeout - UVICORN_GRACE_MARGIN_S)
    # UvicornWorker copies gunicorn's access handlers onto uvicorn's access logger; with none,
    # uvicorn skips its access line entirely instead of formatting and dropping it.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers = []
    uvicorn_access.propagate = False


def child_exit(server: object, worker: object) -> None:
    """Fold a dead worker's metric files into the accumulated ones: its counts stay in the sum,
    and recycled workers (max_requests) do not leave files behind without end."""
    try:
        compact_dead_process(getattr(worker, "pid", 0), os.environ["PROMETHEUS_MULTIPROC_DIR"])
    except Exception:  # Metrics bookkeeping must never take the master down.
        logging.getLogger("gunicorn.error").exception("metrics files of a dead worker kept")

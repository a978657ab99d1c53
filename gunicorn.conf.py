"""gunicorn settings, read from the environment (the production entry point)."""

import multiprocessing
import os

bind = os.environ.get("BIND", "0.0.0.0:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", str(max(2, multiprocessing.cpu_count()))))
worker_class = "uvicorn_worker.UvicornWorker"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "120"))
# Below the pod's terminationGracePeriodSeconds (60 in deploy/), so a drain always completes.
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "45"))
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "5"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "10000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", "1000"))
accesslog = None  # The app writes its own structured access line.
errorlog = "-"

"""Structured logging: every line has the ids, servers' lines share the format, set up once."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from datetime import UTC, date, datetime

from upload_service.observability.context import correlation_id_var, request_id_var
from upload_service.observability.logging_setup import (
    HANDLER_NAME,
    ConsoleFormatter,
    JsonFormatter,
    configure_logging,
)


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("upload_service.test", logging.INFO, __file__, 1, message, args, None)
    made.__dict__.update(extra)
    return made


def test_json_line_has_the_fields_and_the_request_context() -> None:
    request_token = request_id_var.set("req-1")
    correlation_token = correlation_id_var.set("corr-1")
    try:
        line = JsonFormatter().format(record("hello %s", "world", route="/v1/x", status=200))
    finally:
        request_id_var.reset(request_token)
        correlation_id_var.reset(correlation_token)
    entry = json.loads(line)
    assert entry["message"] == "hello world"
    assert entry["level"] == "INFO"
    assert entry["logger"] == "upload_service.test"
    assert entry["timestamp"].endswith("Z")
    assert (entry["request_id"], entry["correlation_id"]) == ("req-1", "corr-1")
    assert (entry["route"], entry["status"]) == ("/v1/x", 200)


def test_timestamps_are_utc_to_the_millisecond_across_second_boundaries() -> None:
    # The formatter caches the date and time of the current second: crossing into the next
    # second, or back to an earlier one (another thread's record), must not reuse it.
    formatter = JsonFormatter()
    for created in (1768473000.999, 1768473001.0, 1768473001.5004, 1768472999.25, 86399.9999):
        made = record()
        made.created = created
        expected = datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds")
        assert json.loads(formatter.format(made))["timestamp"] == expected.replace("+00:00", "Z")


def test_values_json_cannot_encode_are_written_as_text() -> None:
    entry = json.loads(JsonFormatter().format(record(when=date(2026, 1, 15), size=2**70)))
    assert (entry["when"], entry["size"]) == ("2026-01-15", 2**70)


def test_outside_a_request_the_ids_are_null_not_missing() -> None:
    entry = json.loads(JsonFormatter().format(record()))
    assert entry["request_id"] is None
    assert entry["correlation_id"] is None


def test_exceptions_are_one_json_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        failed = record("failed")
        failed.exc_info = sys.exc_info()
    line = JsonFormatter().format(failed)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


def test_console_line_is_readable_and_keeps_the_fields() -> None:
    line = ConsoleFormatter().format(record("GET / 200", user_id="alice"))
    assert " INFO " in line
    assert "upload_service.test: GET / 200" in line
    assert "user_id=alice" in line


def test_configure_logging_twice_keeps_one_handler() -> None:
    configure_logging("json", "INFO")
    configure_logging("console", "INFO")
    handlers = [h for h in logging.getLogger().handlers if h.get_name() == HANDLER_NAME]
    assert len(handlers) == 1
    assert isinstance(handlers[0].formatter, ConsoleFormatter)
    # The servers' loggers now reach our handler through the root, once.
    assert logging.getLogger("uvicorn.error").handlers == []
    assert logging.getLogger("uvicorn").propagate


SERVER_SCRIPT = """
import logging, logging.config
from upload_service.observability.logging_setup import logging_config
logging.config.dictConfig(logging_config("json", "INFO"))
logging.getLogger("gunicorn.error").info("Booting worker with pid: 1")
logging.getLogger("uvicorn.error").info("Application startup complete.")
logging.getLogger("uvicorn.access").info("duplicate access line")
logging.getLogger("upload_service.jobs").warning("retrying")
"""


def test_servers_log_through_the_same_json_format() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SERVER_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    entries = [json.loads(line) for line in done.stderr.splitlines()]
    assert [e["logger"] for e in entries] == [
        "gunicorn.error",
        "uvicorn.error",
        "upload_service.jobs",
    ]
    for entry in entries:
        assert {"timestamp", "level", "logger", "message", "request_id", "correlation_id"} <= set(
            entry
        )

"""Structured logging with the standard library: one formatter for our lines and the servers'.

JSON lines in production (`LOG_FORMAT=json`), readable lines in development. Every line carries
`request_id` and `correlation_id` from the request's contextvars, so "what happened to request X"
is one grep, and a job's lines carry the correlation id of the upload that caused it.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any, Literal, TextIO

import orjson

from upload_service.observability.clock import utc_millisecond
from upload_service.observability.context import correlation_id_var, request_id_var

LogFormat = Literal["console", "json"]
HANDLER_NAME = "upload_service"

# Attributes every LogRecord has; anything else on a record came from `extra=` and is a field.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
    "request_id",
    "correlation_id",
}
# The servers' own loggers: their lines go through our handler, once.
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "gunicorn.error")
# Their access lines would repeat ours (`upload_service.access` has the route and the user).
SERVER_ACCESS_LOGGERS = ("uvicorn.access", "gunicorn.access")


def _timestamp(record: logging.LogRecord) -> str:
    return utc_millisecond(record.created)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[0] != "_"}


def _context(record: logging.LogRecord) -> tuple[str | None, str | None]:
    # An explicit `extra={"request_id": …}` wins; otherwise the request being served, if any.
    request_id = getattr(record, "request_id", None) or request_id_var.get()
    correlation_id = getattr(record, "correlation_id", None) or correlation_id_var.get()
    return request_id, correlation_id


class JsonFormatter(logging.Formatter):
    """One JSON object a line: timestamp, level, logger, message, ids, then the record's extras."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        request_id, correlation_id = _context(record)
        entry: dict[str, Any] = {
            "timestamp": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": request_id,
            "correlation_id": correlation_id,
            "pid": record.process,
        }
        entry.update(_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # orjson.JSONEncodeError: an integer past 64 bits, say
            return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """A readable line for a terminal: time, level, logger, message, then `key=value` fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of text (plus a traceback, when there is one)."""
        request_id, correlation_id = _context(record)
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = {"request_id": request_id, "correlation_id": correlation_id, **_fields(record)}
        extras = " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        if extras:
            line = f"{line} [{extras}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever `sys.stderr` is at the time, so a replaced stream is never stale."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:
        """The current standard error."""
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:
        pass  # Always the current sys.stderr; see the getter.


def formatter_for(log_format: LogFormat) -> logging.Formatter:
    """The formatter for `LOG_FORMAT`."""
    return JsonFormatter() if log_format == "json" else ConsoleFormatter()


def logging_config(log_format: LogFormat, level: str) -> dict[str, Any]:
    """A `dictConfig` for servers that configure logging before the app exists.

    uvicorn's `log_config` and gunicorn's `logconfig_dict` take it. gunicorn's and uvicorn's
    loggers get our handler directly and do not propagate, because `UvicornWorker` copies the
    `gunicorn.error` handlers onto `uvicorn.error` and turns its propagation off.
    """
    formatter = f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'ConsoleFormatter'}"
    server = {"handlers": [HANDLER_NAME], "level": level, "propagate": False}
    access = {"handlers": [HANDLER_NAME], "level": "WARNING", "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {HANDLER_NAME: {"()": formatter}},
        "handlers": {
            HANDLER_NAME: {"class": f"{__name__}.StderrHandler", "formatter": HANDLER_NAME}
        },
        "root": {"handlers": [HANDLER_NAME], "level": level},
        "loggers": {
            **{name: server for name in SERVER_LOGGERS},
            **{name: access for name in SERVER_ACCESS_LOGGERS},
        },
    }


def configure_logging(log_format: LogFormat, level: str) -> logging.Handler:
    """Route every logger through one structured handler on the root; safe to call again.

    Handlers other tools put on the root (pytest's capture, say) stay. A second call only
    updates the format and level, so building the app twice never duplicates lines.
    """
    root = logging.getLogger()
    ours = next((h for h in root.handlers if h.get_name() == HANDLER_NAME), None)
    if ours is None:
        ours = StderrHandler()
        ours.set_name(HANDLER_NAME)
        root.addHandler(ours)
    ours.setFormatter(formatter_for(log_format))
    root.setLevel(level)
    for name in (*SERVER_LOGGERS, *SERVER_ACCESS_LOGGERS):
        server_logger = logging.getLogger(name)
        if ours in server_logger.handlers:
            continue  # Already wired by `logging_config` (gunicorn, `serve`).
        server_logger.handlers = []
        server_logger.propagate = True
        if name in SERVER_ACCESS_LOGGERS:
            server_logger.setLevel(logging.WARNING)
    skip_unused_record_fields()
    return ours


def skip_unused_record_fields() -> None:
    """Stop filling in record fields no line of ours shows (the logging docs' "Optimization").

    Every record otherwise looks up its thread's name, its process's name and the caller's
    file, function and line (a walk up the stack): a third of the access line's cost.
    """
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # the documented switch for caller information

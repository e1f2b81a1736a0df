"""Log lines: plain text by default, one JSON object per line with
EVENTGRAPH_LOG_FORMAT=json (CONTRACT.md 7.7).

The correlation id comes from a context variable that the request (or the saga message)
being handled sets once, so every line logged on its behalf carries it, uvicorn's access
line included (uvicorn logs it from the app's own `send`).
"""

from __future__ import annotations

import logging
import logging.config
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import orjson
from opentelemetry import trace

CORRELATION_ID: ContextVar[str | None] = ContextVar("eventgraph_correlation_id", default=None)
# The request's trace, kept past its operation span for the lines logged after it (the access line).
TRACE_ID: ContextVar[str | None] = ContextVar("eventgraph_trace_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def current_trace_id() -> str | None:
    """The W3C trace id of the span in progress, else of the request's operation, if traced."""
    context = trace.get_current_span().get_span_context()
    return f"{context.trace_id:032x}" if context.is_valid else TRACE_ID.get()


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        correlation_id = CORRELATION_ID.get()
        if correlation_id:
            entry["correlation_id"] = correlation_id
        trace_id = current_trace_id()
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def log_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """A `logging.config.dictConfig` for the service's, uvicorn's and the access log's lines."""
    formatter: dict[str, Any] = (
        {"()": JsonFormatter} if log_format == "json" else {"format": TEXT_FORMAT}
    )
    handler = {"class": "logging.StreamHandler", "formatter": "default", "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": level.upper()},
        "loggers": {
            # uvicorn's own handlers off: its lines reach the root's, in the same format
            name: {"handlers": [], "propagate": True, "level": level.upper()}
            for name in ("uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }


def configure_logging(log_format: str, level: str = "INFO") -> None:
    logging.config.dictConfig(log_config(log_format, level))

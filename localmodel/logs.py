"""Structured logging shared by every entry point.

Machines read our logs (kubectl logs, Loki), people read them in a terminal: one JSON object per line when
stderr is not a terminal, rich's readable lines when it is. Context goes in `extra={...}`, never into the
message text, so it stays a field that can be queried.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged as a field.
_RECORD_ATTRIBUTES = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "taskName"}


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record."""
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRIBUTES}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, then the record's own fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **record_fields(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class _FieldsFormatter(logging.Formatter):
    """For terminals: the message followed by its fields as key=value."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        return f"{text}  {fields}" if fields else text


# "json" or "text": overrides the choice by terminal. Local mode sets "text" for the backends whose
# stderr it relays to a terminal (their stderr is a pipe, but a person reads it).
LOG_FORMAT_VARIABLE = "LOCALMODEL_LOG_FORMAT"


def configure_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Send every logger's records to stderr, as JSON lines unless stderr is a terminal."""
    chosen = os.environ.get(LOG_FORMAT_VARIABLE)
    if json_lines is None:
        json_lines = chosen == "json" or (chosen != "text" and not sys.stderr.isatty())
    handler: logging.Handler
    if json_lines:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
    elif not sys.stderr.isatty():  # text for a reader at the other end of a pipe: plain, never wrapped
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_FieldsFormatter("%(levelname)-7s %(name)s: %(message)s"))
    else:
        from rich.logging import RichHandler  # imported here: only terminals need it

        handler = RichHandler(show_path=False, rich_tracebacks=True)
        handler.setFormatter(_FieldsFormatter("%(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # HTTP clients log every request at INFO; a download is one request and has its own progress.
    for chatty in ("httpx", "httpx2", "httpcore"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))

"""Logging for the ``jobworker worker`` command: readable lines, or JSON lines.

The library never configures logging; the command line does, for its own
process only, through :func:`configure_logging`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
from typing import Final, Literal, TextIO

from .redact import mask_secrets

__all__ = ["JOB_LOG_MODES", "LOG_FORMATS", "LOG_LEVELS", "JSONFormatter", "configure_logging"]

LogFormat = Literal["text", "json"]
JobLogMode = Literal["all", "errors", "off"]

LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
LOG_LEVELS: Final = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
#: Which per-job lines (the ``jobworker.jobs`` logger) to keep: every job's
#: end, only failed, retried and lost attempts, or none.
JOB_LOG_MODES: Final[tuple[JobLogMode, ...]] = ("all", "errors", "off")
_JOB_LOG_LEVELS: Final[dict[str, int]] = {
    "all": logging.NOTSET,
    "errors": logging.WARNING,
    "off": logging.CRITICAL + 1,
}

_TEXT_FORMAT: Final = "%(asctime)s %(levelname)-7s %(name)s [%(threadName)s] %(message)s"

# The attributes every LogRecord has; anything else came from ``extra=``.
_STANDARD: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)


class _TextFormatter(logging.Formatter):
    """The text format, with every password masked (a driver's error may quote a DSN)."""

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


class JSONFormatter(logging.Formatter):
    """Format each record as one JSON object on one line.

    Keys: ``time`` (ISO 8601, UTC), ``level``, ``logger``, ``thread``,
    ``message``, ``exception`` (the formatted traceback, when there is one),
    and any ``extra=`` fields that JSON can hold. Passwords in the message
    and the traceback are masked.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Return *record* as one line of JSON."""
        data: dict[str, object] = {
            "time": _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "thread": record.threadName,
            "message": mask_secrets(record.getMessage()),
        }
        if record.exc_info:
            data["exception"] = mask_secrets(self.formatException(record.exc_info))
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in data:
                data[key] = value
        return json.dumps(data, default=repr, ensure_ascii=False)


def configure_logging(
    *,
    level: str = "INFO",
    format: LogFormat = "text",
    stream: TextIO,
    job_log: JobLogMode = "all",
) -> logging.Handler:
    """Send every log record of *level* and above to *stream*; return the handler.

    Replaces the root logger's handlers: the command owns its process.
    *job_log* sets which lines of the ``jobworker.jobs`` logger (one per
    finished attempt) pass: ``"all"``, ``"errors"`` or ``"off"``.
    """
    logging.getLogger("jobworker.jobs").setLevel(_JOB_LOG_LEVELS[job_log])
    handler = logging.StreamHandler(stream)
    if format == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(_TextFormatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler

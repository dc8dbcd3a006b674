"""Logging: plain lines or one JSON object per line (`LOG_FORMAT=json`), and the audit trail.

Logs carry ids (team, channel, thread, user, file), never message text or file contents.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from storage import DATABASE_OUTAGES, ThreadKey

AUDIT_LOGGER = "bot.audit"
# What a LogRecord carries that is not a caller's `extra` field.
_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_FIELDS})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, log_format: str) -> None:
    handler = logging.StreamHandler()
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)


def audit(event: str, thread: ThreadKey | None = None, **fields: str | int | bool | None) -> None:
    """A structured line for the audit trail: resets, refusals, stops, budget stops; `thread`
    adds its team, channel and thread ts."""
    if thread is not None:
        fields = {"team": thread.team_id, "channel": thread.channel_id, "thread_ts": thread.thread_ts, **fields}
    described = " ".join(f"{key}={value}" for key, value in fields.items())
    logging.getLogger(AUDIT_LOGGER).info("%s %s", event, described, extra={"audit": {"event": event, **fields}})


def log_failure(what: str, error: BaseException, log: logging.Logger | None = None) -> None:
    """One line for a database that is away for a moment; a traceback for anything else."""
    log = log or logging.getLogger("bot")
    if isinstance(error, DATABASE_OUTAGES):
        log.warning("%s: the database is away (%s: %s)", what, type(error).__name__, error)
    else:
        log.error(what, exc_info=error)

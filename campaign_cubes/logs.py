"""The orchestrator's log lines: text for people, one JSON object per line for machines.

Every module logs through its own logger (``logging.getLogger(__name__)``). A record
may carry an ``event`` name and a ``fields`` mapping (``extra={...}``); the job and
the run id come from the run being executed (``job_context``), so that no call site
has to repeat them.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
TEXT_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"

_JOB: contextvars.ContextVar[str | None] = contextvars.ContextVar("job", default=None)
_RUN_ID: contextvars.ContextVar[int | None] = contextvars.ContextVar("run_id", default=None)


@contextmanager
def job_context(job: str) -> Iterator[None]:
    """Tag every record logged inside with `job` (and, once set, the run id)."""
    job_token, run_token = _JOB.set(job), _RUN_ID.set(None)
    try:
        yield
    finally:
        _JOB.reset(job_token)
        _RUN_ID.reset(run_token)


def set_run_id(run_id: int) -> None:
    """The run id of the job being executed, for the records that follow."""
    _RUN_ID.set(run_id)


def event(name: str, **fields: Any) -> dict[str, Any]:
    """`extra=` for a record: its event name and its fields (JSON-serialisable)."""
    return {"event": name, "fields": fields}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, job, run_id, event, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = dict(getattr(record, "fields", None) or {})
        if record.exc_info:
            fields["traceback"] = self.formatException(record.exc_info)
        payload = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "job": _JOB.get(),
            "run_id": _RUN_ID.get(),
            "event": getattr(record, "event", None) or "log",
            "logger": record.name,
            "message": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(payload, default=str)


def configure(verbose: bool, log_format: str = "text") -> None:
    """Log to stdout, in `log_format` ('text' or 'json'); debug records with `verbose`."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT, datefmt=TEXT_DATE_FORMAT)
    )
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)

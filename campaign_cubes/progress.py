"""Live progress of a dbt build: one log line per finished node and per publication step.

dbt's JSON events carry each node's index, status, timing and adapter message; the
publication (macros/published_table.sql) logs its long steps with a `step: ` prefix.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from campaign_cubes.dbt import EventSink
from campaign_cubes.logs import event

log = logging.getLogger(__name__)

STEP_PREFIX = "step: "  # the publication's step messages (macros/published_table.sql)
# "SELECT 950", "INSERT 0 4", "COPY 12": the rows the statement touched.
_ROWS = re.compile(r"^(?:SELECT|INSERT \d+|UPDATE|DELETE|COPY|MERGE)\s+(\d+)$")


def rows_of(adapter_message: str) -> int | None:
    found = _ROWS.match(adapter_message.strip())
    return int(found.group(1)) if found else None


def node_finished(data: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of a node-result event: index, total, node, type, status, rows, seconds."""
    node = data.get("node_info") or {}
    if "index" not in data or not node.get("node_name"):
        return None
    message = str(data.get("status") or data.get("result_message") or "")
    return {
        "index": data["index"],
        "total": data.get("total") or data.get("num_models"),
        "node": node["node_name"],
        "resource_type": node.get("resource_type"),
        "status": node.get("node_status") or message,
        "rows": rows_of(message),
        "failures": data.get("num_failures"),
        "seconds": round(float(data.get("execution_time") or 0.0), 2),
    }


def node_progress(job: str) -> EventSink:
    """An on_event handler that logs the build of `job` as it happens."""

    def show(dbt_event: dict[str, Any]) -> None:
        name = str(dbt_event["info"].get("name", ""))
        data = dbt_event.get("data") or {}
        if name.startswith("Log") and name.endswith("Result"):
            fields = node_finished(data)
            if fields is not None:
                log.info(
                    "%s: %s/%s %s %s %s%s in %.1f s",
                    job,
                    fields["index"],
                    fields["total"],
                    fields["resource_type"],
                    fields["node"],
                    fields["status"],
                    "" if fields["rows"] is None else f", {fields['rows']} rows",
                    fields["seconds"],
                    extra=event("node", **fields),
                )
        elif name == "JinjaLogInfo":
            message = str(data.get("msg", ""))
            if message.startswith(STEP_PREFIX):
                log.info("%s: %s", job, message[len(STEP_PREFIX) :], extra=event("step", text=message))

    return show

"""The failure hook: a shell command (CUBES_* variables) and/or a JSON POST per failed run."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import urllib.request
from dataclasses import asdict

from campaign_cubes.dbt import scrubbed_env
from campaign_cubes.failures import first_lines
from campaign_cubes.outcomes import Hook, RunResult
from campaign_cubes.timetable import SchedulerSettings

log = logging.getLogger(__name__)

HOOK_TIMEOUT_SECONDS = 60.0


def failure_hook(settings: SchedulerSettings) -> Hook:
    """Run `on_failure` (a shell command, CUBES_* variables) and/or POST to `on_failure_url`."""

    def notify(result: RunResult) -> None:
        if settings.on_failure:
            _run_command(settings.on_failure, result)
        if settings.on_failure_url:
            _post(settings.on_failure_url, result)

    return notify


def hook_payload(result: RunResult) -> dict[str, object]:
    payload = asdict(result)
    payload["slot"] = result.slot.isoformat() if result.slot else None
    payload["failed_nodes"] = list(result.failed_nodes)
    payload["holder"] = result.holder.describe() if result.holder else None
    payload["host"] = socket.gethostname()
    return payload


def _run_command(command: str, result: RunResult) -> None:
    env = {
        **scrubbed_env(),  # the command needs no database password, so it gets none
        "CUBES_JOB": result.job,
        "CUBES_SLOT": result.slot.isoformat() if result.slot else "",
        "CUBES_TRIGGER": result.trigger,
        "CUBES_OUTCOME": result.outcome,
        "CUBES_EXIT_CODE": str(result.exit_code),
        "CUBES_DBT_EXIT_CODE": "" if result.dbt_exit_code is None else str(result.dbt_exit_code),
        "CUBES_FAILED_NODES": " ".join(result.failed_nodes),
        "CUBES_MESSAGE": result.message,
        "CUBES_RUN_ID": "" if result.run_id is None else str(result.run_id),
        "CUBES_ATTEMPTS": str(result.attempts),
    }
    try:
        done = subprocess.run(
            command, shell=True, env=env, timeout=HOOK_TIMEOUT_SECONDS, capture_output=True, text=True
        )
    except subprocess.TimeoutExpired:
        log.warning("%s: on_failure command timed out after %.0f s", result.job, HOOK_TIMEOUT_SECONDS)
        return
    if done.returncode != 0:
        log.warning(
            "%s: on_failure command exited %d: %s",
            result.job,
            done.returncode,
            first_lines(done.stderr or done.stdout, 3),
        )


def _post(url: str, result: RunResult) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(hook_payload(result)).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=HOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except OSError as problem:  # URLError, HTTPError and timeouts are all OSErrors
        log.warning("%s: on_failure_url POST failed: %s", result.job, problem)

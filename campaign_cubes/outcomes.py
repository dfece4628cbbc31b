"""How a run ends: the outcome names, orchestrate.py's exit codes, and the result of a run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from campaign_cubes.history import (
    FAILED,
    INTERRUPTED,
    STALE_SOURCE,
    SUCCESS,
    TIMEOUT,
    TRANSIENT_EXHAUSTED,
    Holder,
)

# orchestrate.py's exit codes (documented in its docstring and the README).
EXIT_OK = 0
EXIT_DBT_FAILED = 1  # a model or test failed (not retried)
EXIT_CONFIG = 2  # bad usage or configuration
EXIT_DATABASE = 3  # the database could not be reached or started (after retries)
EXIT_BUSY = 4  # another process holds the job's lock: nothing was run
EXIT_TRANSIENT = 5  # transient failures used up the retry budget
EXIT_TIMEOUT = 6  # the run's overall timeout expired; dbt was interrupted
EXIT_UNEXPECTED = 7  # an unexpected error (dbt missing, disk full): the run row says which
EXIT_STALE_SOURCE = 8  # the facts were too old to publish (stale_after): nothing was published
EXIT_INTERRUPTED = 130  # stopped by SIGINT/SIGTERM

# Outcomes of results only (busy also ends a run row whose job's work folder stayed in use);
# the outcomes of recorded runs are history's (SUCCESS, FAILED, TIMEOUT...).
BUSY = "busy"
ALREADY_DONE = "already_done"  # another process ran the slot between our look and our lock
UNREACHABLE = "database_unreachable"
CONFIG_ERROR = "configuration_error"  # e.g. the login was refused: nothing was run
ABANDONED_HOOK = "abandoned"

OUTCOME_EXIT = {
    SUCCESS: EXIT_OK,
    FAILED: EXIT_DBT_FAILED,
    TIMEOUT: EXIT_TIMEOUT,
    TRANSIENT_EXHAUSTED: EXIT_TRANSIENT,
    STALE_SOURCE: EXIT_STALE_SOURCE,
    INTERRUPTED: EXIT_INTERRUPTED,
    BUSY: EXIT_BUSY,
    UNREACHABLE: EXIT_DATABASE,
    CONFIG_ERROR: EXIT_CONFIG,
}


@dataclass(frozen=True)
class RunResult:
    """How one run of one job ended: what the log line, the exit code and the failure hook say."""

    job: str
    slot: datetime | None
    trigger: str
    outcome: str
    exit_code: int
    run_id: int | None = None
    attempts: int = 0
    dbt_exit_code: int | None = None
    failed_nodes: tuple[str, ...] = ()
    message: str = ""
    holder: Holder | None = None


Hook = Callable[[RunResult], None]  # told of every run that did not succeed

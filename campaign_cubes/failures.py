"""What went wrong in a dbt attempt: transient (retry), configuration (exit 2) or final.

`classify` turns one dbt run into an `Attempt`. Only a short positive list of
errors is transient; login, permission and read-only errors are the operator's to
fix and say what is missing; everything else fails at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from campaign_cubes.dbt import ANSI, DbtRun, tail
from campaign_cubes.timetable import ConfigError

# The only errors worth another attempt: the server is away or (re)starting, the
# connection was lost, or the session lost a race (lock, deadlock, serialization,
# a standby replaying). Every other error is deterministic and fails at once.
TRANSIENT_MARKERS = (
    "connection refused", "could not connect to server", "server closed the connection",
    "terminating connection", "connection already closed", "could not receive data from server",
    "could not send data to server", "ssl syscall error", "timeout expired", "connection timed out",
    "the database system is starting up", "the database system is shutting down",
    "the database system is in recovery mode", "the database system is not yet accepting connections",
    "sorry, too many clients already", "due to lock timeout", "could not obtain lock",
    "deadlock detected", "could not serialize access", "conflict with recovery",
)  # fmt: skip
# The publication's freshness gate (macros/source_freshness.sql): its own outcome, never retried.
STALE_SOURCE_ERROR = re.compile(
    r"campaign-cubes stale source, nothing was published: (.*?)(?: > in macro| > called by|$)"
)
# Errors the operator fixes in the settings or the grants: exit 2, never retried.
# (pattern, what the message adds so that it says what is missing)
CONFIG_PROBLEMS = (
    # the project's own check of its settings (macros/validate_settings.sql)
    (re.compile(r"campaign-cubes settings refused, nothing was written: (.*?)(?: > in macro| > called by|$)"),
     "settings refused, nothing was written: {0}"),
    # its checks against the database, at run start (before any model)
    (re.compile(r"(var \w+ is '[^']*', (?:which PostgreSQL does not know as a time zone name"
                r"|but database '[^']*' has no such schema))"),
     "{0}"),
    (re.compile(r"campaign-cubes: (\S+ is timestamp without time zone)"),
     "{0}: set var campaign_database_timezone to Campaign's WdbcTimeZone"),
    (re.compile(r"(?:password )?authentication failed for user \"?([^\"\s]*)\"?", re.I),
     "authentication failed for user {0}: check PGUSER and PGPASSWORD (or the pgpass file)"),
    (re.compile(r"no password supplied", re.I),
     "the server wants a password and none was given: set PGPASSWORD or a pgpass file"),
    (re.compile(r"no pg_hba\.conf entry for .*", re.I),
     "the server refuses this login ({0}): see its pg_hba.conf"),
    (re.compile(r"role \"([^\"]*)\" does not exist", re.I), "role {0} does not exist"),
    (re.compile(r"database \"([^\"]*)\" does not exist", re.I), "database {0} does not exist: check PGDATABASE"),
    (re.compile(r"permission denied for (\w+ [^\s|]+)", re.I),
     "permission denied for {0}: grant it to the build role (PGUSER)"),
    (re.compile(r"permission denied to (\w+(?: \w+)?)", re.I),
     "permission denied to {0}: the build role (PGUSER) lacks that privilege"),
    (re.compile(r"must be owner of (\w+ [^\s|]+)", re.I),
     "the build role must own {0}: build as its owner, or hand it over"),
    (re.compile(r"cannot execute (\w+(?: \w+)?) in a read-only transaction", re.I),
     "cannot execute {0} in a read-only transaction: PGHOST points at a read-only server "
     "(a standby?) or default_transaction_read_only is on; build on the primary"),
)  # fmt: skip


@dataclass(frozen=True)
class Attempt:
    """One dbt invocation, classified."""

    exit_code: int
    transient: bool = False
    timed_out: bool = False
    config_error: bool = False  # permission, read-only or login: exit 2, no retry
    stale_source: bool = False  # the freshness gate refused the facts: exit 8, no retry
    busy: bool = False  # the job's work folder stayed in use by another process
    failed_nodes: tuple[str, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.failed_nodes


def classify(run: DbtRun) -> Attempt:
    if run.ok:
        return Attempt(exit_code=0)
    failed = tuple(node.name for node in run.broken)
    message = first_lines(run.broken[0].message, 2) if run.broken else _log_error(run)
    if run.timed_out:
        return Attempt(
            run.exit_code, timed_out=True, failed_nodes=failed, message=f"timed out after {run.seconds:.0f} s"
        )
    stale = next(filter(None, map(STALE_SOURCE_ERROR.search, map(_flat, _error_texts(run)))), None)
    if stale:
        return Attempt(run.exit_code, stale_source=True, failed_nodes=failed, message=stale.group(1))
    problem = next(filter(None, map(config_problem, _error_texts(run))), None)
    if problem:
        return Attempt(run.exit_code, config_error=True, failed_nodes=failed, message=problem)
    return Attempt(run.exit_code, transient=is_transient(run), failed_nodes=failed, message=message)


def is_transient_error(text: str) -> bool:
    """Whether an error message is one of the few that another attempt can get past."""
    lowered = text.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


def is_transient(run: DbtRun) -> bool:
    """True only if every error is a connection, lock or recovery problem (a positive list)."""
    if any(node.status == "fail" for node in run.broken):
        return False  # a data test found bad data: retrying cannot help
    return all(is_transient_error(text) for text in _error_texts(run))


def config_problem(text: str) -> str | None:
    """What the operator must fix, when `text` is a login, permission or read-only error."""
    flat = _flat(text)
    for pattern, advice in CONFIG_PROBLEMS:
        found = pattern.search(flat)
        if found:
            return advice.format(*(found.groups() or (found.group(0),)))
    return None


def _flat(text: str) -> str:
    return " ".join(text.split())


def login_problem(problem: BaseException) -> ConfigError | None:
    """A ConfigError when a failed connection is the settings' fault (password, role, database)."""
    found = config_problem(str(problem))
    return ConfigError(found) if found else None


def describe_exception(problem: BaseException) -> str:
    """One line for an exception nobody expected: its type and first line."""
    text = first_lines(str(problem), 1)
    return f"{type(problem).__name__}: {text}" if text else type(problem).__name__


def first_lines(message: str, count: int = 6) -> str:
    """The first `count` non-blank lines of `message`, on one line."""
    return " | ".join(line.strip() for line in message.splitlines()[:count] if line.strip())


def _error_texts(run: DbtRun) -> list[str]:
    """The errors that made the run fail: the failed nodes', else dbt's error events, else
    the end of its output (a dbt that failed before its structured log started)."""
    if run.broken:
        return [node.message for node in run.broken]
    if run.errors:
        return [_without_preamble(error) for error in run.errors]
    text = ANSI.sub("", tail(run.log_file, 60))
    # dbt ends a run it could not do with "Encountered an error:" and the error itself.
    return [text.rpartition("Encountered an error")[2] or text]


def _without_preamble(error: str) -> str:
    # dbt's last error event starts "Encountered an error:", the error itself follows
    return error.partition("Encountered an error:")[2].strip() or error


def _log_error(run: DbtRun) -> str:
    """The error dbt printed when no node result explains the failure: its line and the next."""
    if run.errors:
        return first_lines(_without_preamble(run.errors[-1]), 2)
    lines = [ANSI.sub("", line).strip() for line in tail(run.log_file, 60).splitlines()]
    lines = [line for line in lines if line]
    named = [i for i, line in enumerate(lines) if "error" in line.lower() and not line.endswith("an error:")]
    if not named:
        return lines[-1] if lines else f"dbt exit {run.exit_code}"
    return " | ".join(lines[named[-1] : named[-1] + 2])

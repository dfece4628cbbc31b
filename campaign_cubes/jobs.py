"""A job run: locks, history, retries, timeout and failure hook around one dbt build.

`execute` is the whole life of one run of one job, with the clock, the history
store and the dbt runner passed in, so that tests can drive it with a fake clock
and a fake dbt. `dbt_runner` is the real runner: one `dbt build` per attempt.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Protocol

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.dbt import ANSI, DbtRun, run_dbt, scrubbed_env, tail
from campaign_cubes.history import (
    DBT_STATE_LOCK, FAILED, INTERRUPTED, SUCCESS, TIMEOUT, TRANSIENT_EXHAUSTED,
    History, Holder, HistoryUnavailable, RunRecord, job_lock,
)
from campaign_cubes.logs import job_context, set_run_id
from campaign_cubes.progress import node_progress
from campaign_cubes.schedule import ConfigError, Job, SchedulerSettings

log = logging.getLogger(__name__)

JOBS_WORK_DIR = PROJECT_ROOT / "target" / "jobs"

# orchestrate.py's exit codes (documented in its docstring and the README).
EXIT_OK = 0
EXIT_DBT_FAILED = 1  # a model or test failed (not retried)
EXIT_CONFIG = 2  # bad usage or configuration
EXIT_DATABASE = 3  # the database could not be reached or started (after retries)
EXIT_BUSY = 4  # another process holds the job's lock: nothing was run
EXIT_TRANSIENT = 5  # transient failures used up the retry budget
EXIT_TIMEOUT = 6  # the run's overall timeout expired; dbt was interrupted
EXIT_UNEXPECTED = 7  # an unexpected error (dbt missing, disk full): the run row says which
EXIT_INTERRUPTED = 130  # stopped by SIGINT/SIGTERM

# Outcomes of results only (busy also ends a run row whose job's work folder stayed in use).
BUSY = "busy"
ALREADY_DONE = "already_done"  # another process ran the slot between our look and our lock
UNREACHABLE = "database_unreachable"
CONFIG_ERROR = "configuration_error"  # e.g. the login was refused: nothing was run
ABANDONED_HOOK = "abandoned"

OUTCOME_EXIT = {
    SUCCESS: EXIT_OK, FAILED: EXIT_DBT_FAILED, TIMEOUT: EXIT_TIMEOUT,
    TRANSIENT_EXHAUSTED: EXIT_TRANSIENT, INTERRUPTED: EXIT_INTERRUPTED,
    BUSY: EXIT_BUSY, UNREACHABLE: EXIT_DATABASE, CONFIG_ERROR: EXIT_CONFIG,
}

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
)
# Errors the operator fixes in the settings or the grants: exit 2, never retried.
# (pattern, what the message adds so that it says what is missing)
CONFIG_PROBLEMS = (
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
)
# How often a run waiting for the shared dbt state lock (or the job's work folder) asks again.
DBT_STATE_POLL_SECONDS = 1.0
HOOK_TIMEOUT_SECONDS = 60.0


# --- clock ------------------------------------------------------------------------

class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


# --- one dbt attempt -------------------------------------------------------------------

@dataclass(frozen=True)
class Attempt:
    """One dbt invocation, classified."""

    exit_code: int
    transient: bool = False
    timed_out: bool = False
    config_error: bool = False  # permission, read-only or login: exit 2, no retry
    busy: bool = False  # the job's work folder stayed in use by another process
    failed_nodes: tuple[str, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out and not self.failed_nodes


Runner = Callable[[Job, float], Attempt]  # (job, seconds left) -> what happened


def build_args(job: Job, dbt_vars: str | None = None) -> list[str]:
    # The job's selector (selectors.yml) says what a nightly build runs, so that
    # `dbt build --selector <job>` by hand runs exactly the same nodes and tests.
    args = ["build", "--selector", job.selector]
    return [*args, "--vars", dbt_vars] if dbt_vars else args


def run_job(job: Job, *, env: dict[str, str], timeout: float | None, dbt_vars: str | None = None,
            progress: bool = False) -> DbtRun:
    """Build one job's selection: a line for the start and one for the end, and with
    `progress` one per node and per publication step as they happen."""
    args = build_args(job, dbt_vars)
    log.info("%s: start: dbt %s", job.name, " ".join(args))
    run = run_dbt(args, env=env, work_dir=JOBS_WORK_DIR / job.name, timeout=timeout,
                  on_event=node_progress(job.name) if progress else None)
    report(job, run)
    return run


@contextmanager
def work_dir_lock(job: Job, seconds: float) -> Iterator[str | None]:
    """Hold this checkout's work folder of `job` (target/, logs/): None, or who kept it from us.

    The advisory locks are per published schema, so runs for two schemas (a test
    suite, a benchmark) may build the same job at once from one checkout; they must
    not share dbt's target and log folder. A file lock goes with the process.
    """
    folder = JOBS_WORK_DIR / job.name
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+") as handle:
        deadline, told = time.monotonic() + seconds, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                if time.monotonic() >= deadline:
                    yield holder
                    return
                if not told:
                    log.info("%s: waiting for its work folder %s, used by %s", job.name, folder, holder)
                    told = True
                time.sleep(DBT_STATE_POLL_SECONDS)
        handle.truncate(0)
        handle.write(f"orchestrate.py pid {os.getpid()} on {socket.gethostname()} "
                     f"for schema {os.environ.get('CAMPAIGN_CUBES_SCHEMA') or 'campaign_cubes'}\n")
        handle.flush()
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def is_transient_error(text: str) -> bool:
    """Whether an error message is one of the few that another attempt can get past."""
    lowered = text.lower()
    return any(marker in lowered for marker in TRANSIENT_MARKERS)


def config_problem(text: str) -> str | None:
    """What the operator must fix, when `text` is a login, permission or read-only error."""
    flat = " ".join(text.split())
    for pattern, advice in CONFIG_PROBLEMS:
        found = pattern.search(flat)
        if found:
            return advice.format(*(found.groups() or (found.group(0),)))
    return None


def _error_texts(run: DbtRun) -> list[str]:
    """The errors that made the run fail: the failed nodes', else the end of dbt's output."""
    if run.broken:
        return [node.message for node in run.broken]
    text = ANSI.sub("", tail(run.log_file, 60))
    # dbt ends a run it could not do with "Encountered an error:" and the error itself.
    return [text.rpartition("Encountered an error")[2] or text]


def is_transient(run: DbtRun) -> bool:
    """True only if every error is a connection, lock or recovery problem (a positive list)."""
    if any(node.status == "fail" for node in run.broken):
        return False  # a data test found bad data: retrying cannot help
    return all(is_transient_error(text) for text in _error_texts(run))


def classify(run: DbtRun) -> Attempt:
    if run.ok:
        return Attempt(exit_code=0)
    failed = tuple(node.name for node in run.broken)
    message = _first_lines(run.broken[0].message, 2) if run.broken else _log_error(run)
    if run.timed_out:
        return Attempt(run.exit_code, timed_out=True, failed_nodes=failed,
                       message=f"timed out after {run.seconds:.0f} s")
    problem = next(filter(None, map(config_problem, _error_texts(run))), None)
    if problem:
        return Attempt(run.exit_code, config_error=True, failed_nodes=failed, message=problem)
    return Attempt(run.exit_code, transient=is_transient(run), failed_nodes=failed, message=message)


def _log_error(run: DbtRun) -> str:
    """The error dbt printed when no node result explains the failure: its line and the next."""
    lines = [ANSI.sub("", line).strip() for line in tail(run.log_file, 60).splitlines()]
    lines = [line for line in lines if line]
    named = [i for i, line in enumerate(lines) if "error" in line.lower() and not line.endswith("an error:")]
    if not named:
        return lines[-1] if lines else f"dbt exit {run.exit_code}"
    return " | ".join(lines[named[-1]:named[-1] + 2])


def dbt_runner(dbt_vars: str | None, progress: bool = False) -> Runner:
    """The real runner: `dbt build` of the job's selection, with the time left as its timeout."""

    def run(job: Job, seconds_left: float) -> Attempt:
        started = time.monotonic()
        with work_dir_lock(job, seconds_left) as holder:
            if holder is not None:
                return Attempt(-1, busy=True, message=f"work folder {JOBS_WORK_DIR / job.name} used by {holder}")
            return classify(run_job(job, env={}, timeout=seconds_left - (time.monotonic() - started),
                                    dbt_vars=dbt_vars, progress=progress))

    return run


# --- one run: locks, history, retries -----------------------------------------------------

@dataclass(frozen=True)
class RunResult:
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


Hook = Callable[[RunResult], None]


def _slot_text(slot: datetime | None) -> str:
    return slot.isoformat() if slot else "manual"


def execute(
    job: Job,
    slot: datetime | None,
    trigger: str,
    *,
    history: History,
    runner: Runner,
    settings: SchedulerSettings,
    clock: Clock,
    hook: Hook = lambda result: None,
) -> RunResult:
    """Run `job` once for `slot` (None: a manual run), holding its lock throughout."""
    with job_context(job.name):
        return _execute(job, slot, trigger, history=history, runner=runner, settings=settings, clock=clock,
                        hook=hook)


def _execute(job: Job, slot: datetime | None, trigger: str, *, history: History, runner: Runner,
             settings: SchedulerSettings, clock: Clock, hook: Hook) -> RunResult:
    holder = history.try_lock(job_lock(job.name))
    if holder is not None:
        log.warning("%s: busy: another run holds its lock: %s; not started", job.name, holder.describe())
        return RunResult(job.name, slot, trigger, BUSY, EXIT_BUSY, holder=holder,
                         message=f"lock held by {holder.describe()}")
    try:
        # We hold the job's lock, so no live process is running it: a 'running' row is a dead one's.
        for stale in history.abandon_running(job.name, clock.now()):
            report_abandoned(stale, hook)
        # Asked again under the lock: another process may have run the slot since we looked.
        done = [run for run in history.slot_runs(job.name, slot) if run.outcome == SUCCESS] if slot else []
        if done:
            log.info("%s: slot %s already succeeded (run %d); nothing to do",
                     job.name, _slot_text(slot), done[0].run_id)
            return RunResult(job.name, slot, trigger, ALREADY_DONE, EXIT_OK, done[0].run_id)
        run_id = history.start(job.name, slot, trigger, clock.now())
        set_run_id(run_id)
        log.info("%s: run %d (%s, slot %s)", job.name, run_id, trigger, _slot_text(slot))
        try:
            result = _attempts(job, slot, trigger, run_id, history, runner, settings, clock)
        except KeyboardInterrupt:
            history.finish(run_id, clock.now(), INTERRUPTED, EXIT_INTERRUPTED, None, 0, (), "interrupted")
            raise
        except HistoryUnavailable:
            raise  # the database went away: the caller reports it (exit 3); no row can be written
        except Exception as problem:  # dbt missing, disk full...: the row must not stay 'running'
            log.debug("%s: unexpected error", job.name, exc_info=True)
            result = RunResult(job.name, slot, trigger, FAILED, EXIT_UNEXPECTED, run_id,
                               message=f"unexpected error: {describe_exception(problem)}")
        history.finish(run_id, clock.now(), result.outcome, result.exit_code, result.dbt_exit_code,
                       result.attempts, result.failed_nodes, result.message)
    finally:
        history.unlock(job_lock(job.name))
    report_result(result, hook)
    return result


def _wait_for_dbt_state(job: Job, history: History, clock: Clock, deadline: float) -> Holder | None:
    """Take the shared dbt state lock, waiting up to `deadline`; the holder if we gave up."""
    told = False
    while (holder := history.try_lock(DBT_STATE_LOCK)) is not None:
        if clock.monotonic() >= deadline:
            return holder
        if not told:  # once, so a long wait does not flood the log
            log.info("%s: waiting for the dbt state lock (seeds, staging views), held by %s",
                     job.name, holder.describe())
            told = True
        clock.sleep(min(DBT_STATE_POLL_SECONDS, max(0.0, deadline - clock.monotonic())))
    return None


def _attempts(job: Job, slot: datetime | None, trigger: str, run_id: int, history: History,
              runner: Runner, settings: SchedulerSettings, clock: Clock) -> RunResult:
    def result(outcome: str, attempts: int, attempt: Attempt | None, message: str,
               exit_code: int | None = None) -> RunResult:
        return RunResult(job.name, slot, trigger, outcome, OUTCOME_EXIT[outcome] if exit_code is None else exit_code,
                         run_id, attempts, attempt.exit_code if attempt else None,
                         attempt.failed_nodes if attempt else (), message)

    deadline = clock.monotonic() + settings.timeout_seconds
    holder = _wait_for_dbt_state(job, history, clock, deadline)
    if holder is not None:
        return result(TIMEOUT, 0, None, f"timed out waiting for the dbt state lock held by {holder.describe()}")
    try:
        number = 0
        while True:
            number += 1
            if clock.monotonic() >= deadline:  # only a suspended machine gets here
                return result(TIMEOUT, number - 1, None, f"overall timeout of {settings.timeout_seconds:.0f} s "
                                                         "reached before a retry")
            attempt = runner(job, deadline - clock.monotonic())
            if attempt.ok:
                return result(SUCCESS, number, attempt, "")
            if attempt.busy:
                return result(BUSY, number, None, attempt.message)
            if attempt.config_error:
                return result(FAILED, number, attempt, f"configuration: {attempt.message}", EXIT_CONFIG)
            if attempt.timed_out:
                return result(TIMEOUT, number, attempt,
                              f"overall timeout of {settings.timeout_seconds:.0f} s reached ({attempt.message})")
            if not attempt.transient:
                return result(FAILED, number, attempt, attempt.message)
            delay = settings.backoff_seconds * 2 ** (number - 1)
            if number > settings.retries:
                return result(TRANSIENT_EXHAUSTED, number, attempt,
                              f"{attempt.message} (transient; {settings.retries} retries used)")
            if clock.monotonic() + delay >= deadline:
                return result(TRANSIENT_EXHAUSTED, number, attempt,
                              f"{attempt.message} (transient; no time left for a retry)")
            log.warning("%s: attempt %d failed transiently (%s); retry %d of %d in %.0f s",
                        job.name, number, attempt.message, number, settings.retries, delay)
            clock.sleep(delay)
    finally:
        history.unlock(DBT_STATE_LOCK)


def report_result(result: RunResult, hook: Hook) -> None:
    """The one line that says how the run ended; the hook on failure."""
    if result.outcome == SUCCESS:
        log.info("%s: run %s succeeded (slot %s, %d attempt%s)", result.job, result.run_id,
                 _slot_text(result.slot), result.attempts, "" if result.attempts == 1 else "s")
        return
    log.error("%s: run %s %s (slot %s, exit %d, %d attempt%s); failed nodes: %s; %s",
              result.job, result.run_id, result.outcome.upper().replace("_", " "), _slot_text(result.slot),
              result.exit_code, result.attempts, "" if result.attempts == 1 else "s",
              ", ".join(result.failed_nodes) or "none", result.message or "no message")
    if result.outcome != INTERRUPTED:  # an operator's Ctrl-C or a service stop is not an alert
        hook(result)


def report_abandoned(stale: RunRecord, hook: Hook) -> None:
    log.error("%s: run %d (slot %s, started %s by pid %s on %s) was ABANDONED: its process died",
              stale.job, stale.run_id, _slot_text(stale.slot), stale.started_at.isoformat(timespec="seconds"),
              stale.pid, stale.host or "?")
    hook(RunResult(stale.job, stale.slot, stale.trigger, ABANDONED_HOOK, EXIT_INTERRUPTED, stale.run_id,
                   message=stale.message))


def describe_exception(problem: BaseException) -> str:
    """One line for an exception nobody expected: its type and first line."""
    text = _first_lines(str(problem), 1)
    return f"{type(problem).__name__}: {text}" if text else type(problem).__name__


def login_problem(problem: BaseException) -> ConfigError | None:
    """A ConfigError when a failed connection is the settings' fault (password, role, database)."""
    found = config_problem(str(problem))
    return ConfigError(found) if found else None


def connect_with_retries(
    connect: Callable[[], History], settings: SchedulerSettings, clock: Clock, what: str
) -> History:
    """Connect, retrying a refused or failed connection with backoff; HistoryUnavailable at the end.

    A refused login (wrong password, unknown role or database) is no outage: ConfigError at once.
    """
    deadline = clock.monotonic() + settings.timeout_seconds
    for number in range(1, settings.retries + 2):
        try:
            return connect()
        except HistoryUnavailable as problem:
            refused = login_problem(problem)
            if refused is not None:
                raise refused from None
            delay = settings.backoff_seconds * 2 ** (number - 1)
            if number > settings.retries or clock.monotonic() + delay >= deadline:
                raise
            log.warning("%s: database unreachable (%s); retry %d of %d in %.0f s",
                        what, _first_lines(str(problem), 1), number, settings.retries, delay)
            clock.sleep(delay)
    raise AssertionError("unreachable")


# --- failure hook ---------------------------------------------------------------------

def hook_payload(result: RunResult) -> dict[str, object]:
    payload = asdict(result)
    payload["slot"] = result.slot.isoformat() if result.slot else None
    payload["failed_nodes"] = list(result.failed_nodes)
    payload["holder"] = result.holder.describe() if result.holder else None
    payload["host"] = socket.gethostname()
    return payload


def failure_hook(settings: SchedulerSettings) -> Hook:
    """Run `on_failure` (a shell command, CUBES_* variables) and/or POST to `on_failure_url`."""

    def notify(result: RunResult) -> None:
        if settings.on_failure:
            _run_command(settings.on_failure, result)
        if settings.on_failure_url:
            _post(settings.on_failure_url, result)

    return notify


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
        done = subprocess.run(command, shell=True, env=env, timeout=HOOK_TIMEOUT_SECONDS,
                              capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        log.warning("%s: on_failure command timed out after %.0f s", result.job, HOOK_TIMEOUT_SECONDS)
        return
    if done.returncode != 0:
        log.warning("%s: on_failure command exited %d: %s", result.job, done.returncode,
                    _first_lines(done.stderr or done.stdout, 3))


def _post(url: str, result: RunResult) -> None:
    request = urllib.request.Request(url, data=json.dumps(hook_payload(result)).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=HOOK_TIMEOUT_SECONDS) as response:
            response.read()
    except OSError as problem:  # URLError, HTTPError and timeouts are all OSErrors
        log.warning("%s: on_failure_url POST failed: %s", result.job, problem)


# --- the dbt summary of one attempt ------------------------------------------------------

def _counts(run: DbtRun) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(run.status_counts().items()))


def report(job: Job, run: DbtRun) -> None:
    """One summary line, then one line per failed node, or the log tail of a crash."""
    if run.ok:
        log.info("%s: success in %.1f s (%s)", job.name, run.seconds, _counts(run))
        for node in run.warned:
            log.warning("%s: warning: %s: %s", job.name, node.name, node.message)
        for line in project_messages(run.log_file):
            log.warning("%s: %s", job.name, line)
        return
    cause = "timed out" if run.timed_out else f"dbt exit {run.exit_code}"
    log.error(
        "%s: FAILED (%s) in %.1f s (%s); failed nodes: %s",
        job.name, cause, run.seconds, _counts(run) or "no node ran",
        ", ".join(node.name for node in run.broken) or "none recorded",
    )
    for node in run.broken:
        log.error("%s:   %s %s: %s", job.name, node.status, node.name, _first_lines(node.message))
    if not run.broken:
        log.error("%s: dbt output (%s):\n%s", job.name, run.log_file, tail(run.log_file))


def project_messages(console_log: Path) -> list[str]:
    """What the project's own macros said during the build (e.g. the unlisted codes)."""
    if not console_log.exists():
        return []
    marker = "campaign-cubes: "
    return [line.split(marker, 1)[1].strip() for line in console_log.read_text(errors="replace").splitlines()
            if marker in line]


def _first_lines(message: str, count: int = 6) -> str:
    return " | ".join(line.strip() for line in message.splitlines()[:count] if line.strip())

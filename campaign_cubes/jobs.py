"""A job run: locks, history, retries and timeout around one dbt build.

`execute` is the whole life of one run of one job, with the clock, the history
store and the dbt runner passed in (a `RunContext`), so that tests can drive it
with a fake clock and a fake dbt. `dbt_runner` is the real runner: one
`dbt build` per attempt. `execute_together` runs several jobs at once: their first
attempts share one dbt process (`dbt_batch_runner`), and each job keeps its own
lock, history row, retries, outcome and hook. How an attempt's failure is
classified lives in failures.py, the outcomes and exit codes in outcomes.py, the
hook in hooks.py.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.dbt import DbtRun, Invocation, run_dbt, run_dbt_batch, tail
from campaign_cubes.failures import Attempt, classify, describe_exception, first_lines, login_problem
from campaign_cubes.history import (
    DBT_STATE_LOCK,
    FAILED,
    INTERRUPTED,
    STALE_SOURCE,
    SUCCESS,
    TIMEOUT,
    TRANSIENT_EXHAUSTED,
    History,
    HistoryUnavailable,
    Holder,
    RunRecord,
    job_lock,
)
from campaign_cubes.logs import job_context, set_run_id
from campaign_cubes.outcomes import (
    ABANDONED_HOOK,
    ALREADY_DONE,
    BUSY,
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_UNEXPECTED,
    OUTCOME_EXIT,
    Hook,
    RunResult,
)
from campaign_cubes.progress import node_progress
from campaign_cubes.timetable import Job, SchedulerSettings

log = logging.getLogger(__name__)

JOBS_WORK_DIR = PROJECT_ROOT / "target" / "jobs"
# How often a run waiting for the shared dbt state lock (or the job's work folder) asks again.
DBT_STATE_POLL_SECONDS = 1.0


# --- clock ------------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))


# --- one dbt attempt -------------------------------------------------------------------

Runner = Callable[[Job, float], Attempt]  # (job, seconds left) -> what happened
BatchRunner = Callable[[Sequence[Job], float], list[Attempt]]  # several jobs, one process


def build_args(job: Job, dbt_vars: str | None = None) -> list[str]:
    # The job's selector (selectors.yml) says what a nightly build runs, so that
    # `dbt build --selector <job>` by hand runs exactly the same nodes and tests.
    # A job refuses stale facts (its stale_after) unless the vars say otherwise.
    given = json.loads(dbt_vars) if dbt_vars else {}
    return ["build", "--selector", job.selector, "--vars", json.dumps({"stale_source_after": job.stale_after, **given})]


def run_job(
    job: Job, *, env: dict[str, str], timeout: float | None, dbt_vars: str | None = None, progress: bool = False
) -> DbtRun:
    """Build one job's selection: a line for the start and one for the end, and with
    `progress` one per node and per publication step as they happen."""
    args = build_args(job, dbt_vars)
    log.info("%s: start: dbt %s", job.name, " ".join(args))
    run = run_dbt(
        args,
        env=env,
        work_dir=JOBS_WORK_DIR / job.name,
        timeout=timeout,
        on_event=node_progress(job.name) if progress else None,
    )
    log_build_summary(job, run)
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
        handle.write(
            f"orchestrate.py pid {os.getpid()} on {socket.gethostname()} "
            f"for schema {os.environ.get('CAMPAIGN_CUBES_SCHEMA') or 'campaign_cubes'}\n"
        )
        handle.flush()
        try:
            yield None
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def dbt_runner(dbt_vars: str | None, progress: bool = False) -> Runner:
    """The real runner: `dbt build` of the job's selection, with the time left as its timeout."""

    def run(job: Job, seconds_left: float) -> Attempt:
        started = time.monotonic()
        with work_dir_lock(job, seconds_left) as holder:
            if holder is not None:
                return Attempt(-1, busy=True, message=f"work folder {JOBS_WORK_DIR / job.name} used by {holder}")
            timeout = seconds_left - (time.monotonic() - started)
            return classify(run_job(job, env={}, timeout=timeout, dbt_vars=dbt_vars, progress=progress))

    return run


def dbt_batch_runner(dbt_vars: str | None, progress: bool = False) -> BatchRunner:
    """The real runner of jobs run together: their `dbt build`s one after the other in
    one process (campaign_cubes.dbt_batch), each with its own work folder and log."""

    def run(jobs: Sequence[Job], seconds_left: float) -> list[Attempt]:
        started = time.monotonic()
        attempts: dict[str, Attempt] = {}
        with contextlib.ExitStack() as stack:
            ready = []
            for job in jobs:
                holder = stack.enter_context(work_dir_lock(job, seconds_left - (time.monotonic() - started)))
                if holder is not None:
                    folder = JOBS_WORK_DIR / job.name
                    attempts[job.name] = Attempt(-1, busy=True, message=f"work folder {folder} used by {holder}")
                else:
                    ready.append(job)
            invocations = []
            for job in ready:
                with job_context(job.name):
                    args = build_args(job, dbt_vars)
                    log.info("%s: start: dbt %s (one process for %d jobs)", job.name, " ".join(args), len(ready))
                progress_of = node_progress(job.name) if progress else None
                invocations.append(Invocation(args, JOBS_WORK_DIR / job.name, progress_of))
            timeout = seconds_left - (time.monotonic() - started)
            for job, run in zip(ready, run_dbt_batch(invocations, env={}, timeout=timeout), strict=True):
                with job_context(job.name):
                    log_build_summary(job, run)
                attempts[job.name] = classify(run)
        return [attempts[job.name] for job in jobs]

    return run


# --- one run: locks, history, retries -----------------------------------------------------


@dataclass(frozen=True)
class RunContext:
    """One run of one job: what runs, for which slot, and what it runs with."""

    job: Job
    slot: datetime | None  # None: a manual run
    trigger: str
    history: History
    runner: Runner
    settings: SchedulerSettings
    clock: Clock
    hook: Hook

    def result(
        self,
        outcome: str,
        exit_code: int,
        run_id: int | None = None,
        *,
        attempts: int = 0,
        attempt: Attempt | None = None,
        message: str = "",
        holder: Holder | None = None,
    ) -> RunResult:
        """How this run ended; `attempt` (the last dbt attempt) gives dbt's exit code and failed nodes."""
        return RunResult(
            self.job.name,
            self.slot,
            self.trigger,
            outcome,
            exit_code,
            run_id,
            attempts,
            attempt.exit_code if attempt else None,
            attempt.failed_nodes if attempt else (),
            message,
            holder,
        )


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
    context = RunContext(job, slot, trigger, history, runner, settings, clock, hook)
    with job_context(job.name):
        return _execute(context)


def _execute(context: RunContext) -> RunResult:
    begun = _begin(context)
    if isinstance(begun, RunResult):
        return begun
    return _finish(context, begun, lambda: _attempts(context, begun))


def _begin(context: RunContext) -> int | RunResult:
    """Take the job's lock and open its history row: the run id, or why the run will not happen."""
    job, slot, history, clock = context.job, context.slot, context.history, context.clock
    holder = history.try_lock(job_lock(job.name))
    if holder is not None:
        log.warning("%s: busy: another run holds its lock: %s; not started", job.name, holder.describe())
        return context.result(BUSY, EXIT_BUSY, holder=holder, message=f"lock held by {holder.describe()}")
    try:
        # We hold the job's lock, so no live process is running it: a 'running' row is a dead one's.
        for stale in history.abandon_running(job.name, clock.now()):
            report_abandoned(stale, context.hook)
        # Asked again under the lock: another process may have run the slot since we looked.
        done = [each for each in history.slot_runs(job.name, slot) if each.outcome == SUCCESS] if slot else []
        if done:
            log.info(
                "%s: slot %s already succeeded (run %d); nothing to do", job.name, _slot_text(slot), done[0].run_id
            )
            history.unlock(job_lock(job.name))
            return context.result(ALREADY_DONE, EXIT_OK, done[0].run_id)
        run_id = history.start(job.name, slot, context.trigger, clock.now())
    except BaseException:
        history.unlock(job_lock(job.name))
        raise
    set_run_id(run_id)
    log.info("%s: run %d (%s, slot %s)", job.name, run_id, context.trigger, _slot_text(slot))
    return run_id


def _finish(context: RunContext, run_id: int, work: Callable[[], RunResult]) -> RunResult:
    """Do the run's `work`, record how it ended, release the job's lock and report."""
    job, history, clock = context.job, context.history, context.clock
    try:
        try:
            result = work()
        except KeyboardInterrupt:
            _record_interrupted(history, run_id, clock)
            raise
        except HistoryUnavailable:
            raise  # the database went away: the caller reports it (exit 3); no row can be written
        except Exception as problem:  # dbt missing, disk full...: the row must not stay 'running'
            log.debug("%s: unexpected error", job.name, exc_info=True)
            result = context.result(
                FAILED, EXIT_UNEXPECTED, run_id, message=f"unexpected error: {describe_exception(problem)}"
            )
        history.finish(
            run_id,
            clock.now(),
            result.outcome,
            result.exit_code,
            result.dbt_exit_code,
            result.attempts,
            result.failed_nodes,
            result.message,
        )
    finally:
        history.unlock(job_lock(job.name))
    report_result(result, context.hook)
    return result


def _record_interrupted(history: History, run_id: int, clock: Clock) -> None:
    history.finish(run_id, clock.now(), INTERRUPTED, EXIT_INTERRUPTED, None, 0, (), "interrupted")


def execute_together(
    runs: Sequence[tuple[Job, datetime | None, str]],
    *,
    history: History,
    runner: Runner,
    batch_runner: BatchRunner,
    settings: SchedulerSettings,
    clock: Clock,
    hook: Hook = lambda result: None,
) -> list[RunResult]:
    """Run several jobs (each for its slot, with its trigger) at once: their first attempts
    in one dbt process; each job keeps its own lock, history row, retries, outcome and hook."""
    contexts = [RunContext(job, slot, trigger, history, runner, settings, clock, hook) for job, slot, trigger in runs]
    results: dict[int, RunResult] = {}
    begun: list[tuple[int, int]] = []  # (index in runs, run id)
    for index, context in enumerate(contexts):
        with job_context(context.job.name):
            started = _begin(context)
        if isinstance(started, RunResult):
            results[index] = started
        else:
            begun.append((index, started))
    deadline = clock.monotonic() + settings.timeout_seconds
    try:
        firsts = _first_attempts([contexts[index] for index, _ in begun], batch_runner, deadline)
    except KeyboardInterrupt:
        for index, run_id in begun:
            _record_interrupted(history, run_id, clock)
            history.unlock(job_lock(contexts[index].job.name))
        raise
    for (index, run_id), first in zip(begun, firsts, strict=True):
        context = contexts[index]
        with job_context(context.job.name):
            set_run_id(run_id)
            results[index] = _finish(context, run_id, _continue(context, run_id, first, deadline))
    return [results[index] for index in range(len(contexts))]


def _first_attempts(
    contexts: list[RunContext], batch_runner: BatchRunner, deadline: float
) -> list[Attempt | BaseException | None]:
    """The jobs' first attempts, in one batch under the dbt state lock; None for a job that
    must make its own (the lock was not to be had), the exception if the batch failed."""
    if len(contexts) < 2:
        return [None] * len(contexts)
    first = contexts[0]
    if _wait_for_dbt_state(first, deadline) is not None:
        return [None] * len(contexts)
    try:
        attempts: list[Attempt | BaseException | None] = list(
            batch_runner([context.job for context in contexts], deadline - first.clock.monotonic())
        )
        return attempts
    except Exception as problem:  # dbt missing, disk full...: each job records it
        log.debug("jobs run together: unexpected error", exc_info=True)
        return [problem] * len(contexts)
    finally:
        first.history.unlock(DBT_STATE_LOCK)


def _continue(
    context: RunContext, run_id: int, first: Attempt | BaseException | None, deadline: float
) -> Callable[[], RunResult]:
    """A job's work after the batch: its first attempt's verdict, then its own retries."""

    def work() -> RunResult:
        if isinstance(first, BaseException):
            raise first
        return _attempts(context, run_id, first=first, deadline=deadline)

    return work


def _wait_for_dbt_state(context: RunContext, deadline: float) -> Holder | None:
    """Take the shared dbt state lock, waiting up to `deadline`; the holder if we gave up."""
    told = False
    while (holder := context.history.try_lock(DBT_STATE_LOCK)) is not None:
        if context.clock.monotonic() >= deadline:
            return holder
        if not told:  # once, so a long wait does not flood the log
            log.info(
                "%s: waiting for the dbt state lock (seeds, staging views), held by %s",
                context.job.name,
                holder.describe(),
            )
            told = True
        context.clock.sleep(min(DBT_STATE_POLL_SECONDS, max(0.0, deadline - context.clock.monotonic())))
    return None


def _attempts(
    context: RunContext, run_id: int, *, first: Attempt | None = None, deadline: float | None = None
) -> RunResult:
    """Attempts until one settles the run; `first` is an attempt already made (a batch's)."""
    clock, settings = context.clock, context.settings
    deadline = clock.monotonic() + settings.timeout_seconds if deadline is None else deadline
    number = 0
    if first is not None:
        number = 1
        verdict = _verdict(context, run_id, number, first, deadline)
        if verdict is not None:
            return verdict
    holder = _wait_for_dbt_state(context, deadline)
    if holder is not None:
        return context.result(
            TIMEOUT,
            OUTCOME_EXIT[TIMEOUT],
            run_id,
            attempts=number,
            message=f"timed out waiting for the dbt state lock held by {holder.describe()}",
        )
    try:
        while True:
            number += 1
            if clock.monotonic() >= deadline:  # only a suspended machine gets here
                return context.result(
                    TIMEOUT,
                    OUTCOME_EXIT[TIMEOUT],
                    run_id,
                    attempts=number - 1,
                    message=f"overall timeout of {settings.timeout_seconds:.0f} s reached before a retry",
                )
            attempt = context.runner(context.job, deadline - clock.monotonic())
            verdict = _verdict(context, run_id, number, attempt, deadline)
            if verdict is not None:
                return verdict
    finally:
        context.history.unlock(DBT_STATE_LOCK)


def _verdict(context: RunContext, run_id: int, number: int, attempt: Attempt, deadline: float) -> RunResult | None:
    """How attempt `number` ends the run, or None after waiting to retry a transient failure."""

    def result(outcome: str, message: str, made: Attempt | None = attempt) -> RunResult:
        return context.result(outcome, OUTCOME_EXIT[outcome], run_id, attempts=number, attempt=made, message=message)

    clock, settings = context.clock, context.settings
    if attempt.ok:
        return result(SUCCESS, "")
    if attempt.busy:
        return result(BUSY, attempt.message, None)
    if attempt.stale_source:
        return result(STALE_SOURCE, f"stale source: {attempt.message}")
    if attempt.config_error:
        return context.result(
            FAILED,
            EXIT_CONFIG,
            run_id,
            attempts=number,
            attempt=attempt,
            message=f"configuration: {attempt.message}",
        )
    if attempt.timed_out:
        return result(TIMEOUT, f"overall timeout of {settings.timeout_seconds:.0f} s reached ({attempt.message})")
    if not attempt.transient:
        return result(FAILED, attempt.message)
    delay = settings.backoff_seconds * 2 ** (number - 1)
    if number > settings.retries:
        return result(TRANSIENT_EXHAUSTED, f"{attempt.message} (transient; {settings.retries} retries used)")
    if clock.monotonic() + delay >= deadline:
        return result(TRANSIENT_EXHAUSTED, f"{attempt.message} (transient; no time left for a retry)")
    log.warning(
        "%s: attempt %d failed transiently (%s); retry %d of %d in %.0f s",
        context.job.name,
        number,
        attempt.message,
        number,
        settings.retries,
        delay,
    )
    clock.sleep(delay)
    return None


def report_result(result: RunResult, hook: Hook) -> None:
    """The one line that says how the run ended; the hook on failure."""
    if result.outcome == SUCCESS:
        log.info(
            "%s: run %s succeeded (slot %s, %d attempt%s)",
            result.job,
            result.run_id,
            _slot_text(result.slot),
            result.attempts,
            "" if result.attempts == 1 else "s",
        )
        return
    log.error(
        "%s: run %s %s (slot %s, exit %d, %d attempt%s); failed nodes: %s; %s",
        result.job,
        result.run_id,
        result.outcome.upper().replace("_", " "),
        _slot_text(result.slot),
        result.exit_code,
        result.attempts,
        "" if result.attempts == 1 else "s",
        ", ".join(result.failed_nodes) or "none",
        result.message or "no message",
    )
    if result.outcome != INTERRUPTED:  # an operator's Ctrl-C or a service stop is not an alert
        hook(result)


def report_abandoned(stale: RunRecord, hook: Hook) -> None:
    log.error(
        "%s: run %d (slot %s, started %s by pid %s on %s) was ABANDONED: its process died",
        stale.job,
        stale.run_id,
        _slot_text(stale.slot),
        stale.started_at.isoformat(timespec="seconds"),
        stale.pid,
        stale.host or "?",
    )
    hook(
        RunResult(
            stale.job,
            stale.slot,
            stale.trigger,
            ABANDONED_HOOK,
            EXIT_INTERRUPTED,
            stale.run_id,
            message=stale.message,
        )
    )


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
            log.warning(
                "%s: database unreachable (%s); retry %d of %d in %.0f s",
                what,
                first_lines(str(problem), 1),
                number,
                settings.retries,
                delay,
            )
            clock.sleep(delay)
    raise AssertionError("unreachable")


# --- the dbt summary of one attempt ------------------------------------------------------


def _counts(run: DbtRun) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(run.status_counts().items()))


def log_build_summary(job: Job, run: DbtRun) -> None:
    """Log one summary line of a dbt build, then one line per failed node, or the log tail of a crash."""
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
        job.name,
        cause,
        run.seconds,
        _counts(run) or "no node ran",
        ", ".join(node.name for node in run.broken) or "none recorded",
    )
    for node in run.broken:
        log.error("%s:   %s %s: %s", job.name, node.status, node.name, first_lines(node.message))
    if not run.broken:
        log.error("%s: dbt output (%s):\n%s", job.name, run.log_file, tail(run.log_file))


def project_messages(console_log: Path) -> list[str]:
    """What the project's own macros said during the build (e.g. the unlisted codes)."""
    if not console_log.exists():
        return []
    marker = "campaign-cubes: "
    return [
        line.split(marker, 1)[1].strip()
        for line in console_log.read_text(errors="replace").splitlines()
        if marker in line
    ]

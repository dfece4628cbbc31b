"""One run of one job (`execute`), the serve decisions, failure classification, hooks, status.

Every history test runs twice: on the in-memory store and on the real PostgreSQL
table with real advisory locks, two sessions standing for two processes.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar
from zoneinfo import ZoneInfo

import psycopg2
import pytest
from psycopg2 import sql

from campaign_cubes.dbt import DbtRun, NodeResult
from campaign_cubes.failures import Attempt, classify
from campaign_cubes.history import (
    ABANDONED,
    DBT_STATE_LOCK,
    FAILED,
    INTERRUPTED,
    RUNNING,
    STALE_SOURCE,
    SUCCESS,
    TIMEOUT,
    TRANSIENT_EXHAUSTED,
    History,
    HistoryUnavailable,
    PgHistory,
    job_lock,
)
from campaign_cubes.hooks import failure_hook
from campaign_cubes.jobs import connect_with_retries, execute, execute_together
from campaign_cubes.outcomes import (
    ALREADY_DONE,
    BUSY,
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_DBT_FAILED,
    EXIT_OK,
    EXIT_STALE_SOURCE,
    EXIT_TIMEOUT,
    EXIT_TRANSIENT,
    EXIT_UNEXPECTED,
    UNREACHABLE,
    RunResult,
)
from campaign_cubes.scheduler import Due, Scheduler, due_slots, is_due, status_lines
from campaign_cubes.timetable import Job, Schedule, SchedulerSettings
from memory_history import MemoryDatabase, MemoryHistory
from support import FakeClock

UTC = UTC
HEL = ZoneInfo("Europe/Helsinki")
JOB = Job("agg_messageCenter_full", "0 3 * * *", "+agg_messageCenter_full")
OTHER = Job("agg_nmspropositionrcp_full", "0 6 * * *", "+agg_nmspropositionrcp_full")
SCHEDULE = Schedule(HEL, (JOB, OTHER))
SLOT = datetime(2026, 3, 29, 4, 0, tzinfo=HEL)  # the gap-shifted 03:00
SETTINGS = SchedulerSettings(retries=2, backoff_seconds=30, timeout_seconds=3600)


class ScriptedDbt:
    """Returns the given attempts in order, each taking `seconds` of the fake clock."""

    def __init__(self, clock: FakeClock, *attempts: Attempt, seconds: float = 60) -> None:
        self.clock, self.attempts, self.seconds = clock, list(attempts), seconds
        self.calls: list[float] = []

    def __call__(self, job: Job, seconds_left: float) -> Attempt:
        self.calls.append(seconds_left)
        self.clock.advance(self.seconds)
        return self.attempts.pop(0)


OK = Attempt(0)
TRANSIENT = Attempt(2, transient=True, message="could not connect to server: Connection refused")
TEST_FAILED = Attempt(1, failed_nodes=("unique_agg_messagecenter_full_grain",), message="Got 2 results")


@pytest.fixture(params=["memory", "postgres"])
def sessions(request: pytest.FixtureRequest) -> Iterator[Callable[[str], History]]:
    """Opens history sessions (one per simulated process) on one store."""
    if request.param == "memory":
        database = MemoryDatabase()
        yield lambda name: MemoryHistory(database, name)
        return
    pg_conn = request.getfixturevalue("pg_conn")
    schema = f"cubes_test_sched_{uuid.uuid4().hex[:10]}"
    opened: list[PgHistory] = []

    def open_session(name: str) -> History:
        opened.append(PgHistory.connect(schema, name))
        return opened[-1]

    yield open_session
    for session in opened:
        session.close()
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(f"{schema}_audit")))


def _execute(
    history: History,
    clock: FakeClock,
    dbt: ScriptedDbt,
    slot: datetime | None = SLOT,
    settings: SchedulerSettings = SETTINGS,
    hook: Callable[[RunResult], None] = lambda r: None,
) -> RunResult:
    trigger = "schedule" if slot else "manual"
    return execute(JOB, slot, trigger, history=history, runner=dbt, settings=settings, clock=clock, hook=hook)


# --- execute --------------------------------------------------------------------------


def test_success_is_recorded(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    result = _execute(history, clock, ScriptedDbt(clock, OK))
    assert (result.outcome, result.exit_code, result.attempts) == (SUCCESS, EXIT_OK, 1)
    [row] = history.last_runs(JOB.name, 10)
    assert row.slot == SLOT and row.trigger == "schedule" and row.outcome == SUCCESS
    assert row.started_at == SLOT and row.ended_at == SLOT + timedelta(seconds=60)
    assert (row.exit_code, row.dbt_exit_code, row.attempts, row.failed_nodes) == (0, 0, 1, ())
    assert history.try_lock(job_lock(JOB.name)) is None  # released


def test_transient_failures_are_retried_with_backoff(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    dbt = ScriptedDbt(clock, TRANSIENT, TRANSIENT, OK)
    result = _execute(history, clock, dbt)
    assert (result.outcome, result.attempts) == (SUCCESS, 3)
    assert clock.sleeps == [30, 60]  # backoff doubles
    assert dbt.calls == [3600, 3600 - 90, 3600 - 90 - 60 - 60]  # each attempt gets what is left


def test_transient_budget_exhausted(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    alerts: list[RunResult] = []
    result = _execute(history, clock, ScriptedDbt(clock, TRANSIENT, TRANSIENT, TRANSIENT), hook=alerts.append)
    assert (result.outcome, result.exit_code, result.attempts) == (TRANSIENT_EXHAUSTED, EXIT_TRANSIENT, 3)
    assert "Connection refused" in result.message and "2 retries used" in result.message
    assert [a.outcome for a in alerts] == [TRANSIENT_EXHAUSTED]
    assert history.last_runs(JOB.name, 1)[0].outcome == TRANSIENT_EXHAUSTED


def test_model_or_test_failure_is_not_retried(
    sessions: Callable[[str], History], caplog: pytest.LogCaptureFixture
) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    alerts: list[RunResult] = []
    result = _execute(history, clock, ScriptedDbt(clock, TEST_FAILED, OK), hook=alerts.append)
    assert (result.outcome, result.exit_code, result.attempts) == (FAILED, EXIT_DBT_FAILED, 1)
    assert clock.sleeps == []
    [row] = history.last_runs(JOB.name, 1)
    assert row.failed_nodes == ("unique_agg_messagecenter_full_grain",) and row.dbt_exit_code == 1
    assert [(a.outcome, a.failed_nodes) for a in alerts] == [(FAILED, ("unique_agg_messagecenter_full_grain",))]
    [line] = [r.getMessage() for r in caplog.records if "FAILED (slot" in r.getMessage()]
    assert "failed nodes: unique_agg_messagecenter_full_grain" in line and "exit 1" in line


def test_timeout_is_its_own_outcome(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    result = _execute(history, clock, ScriptedDbt(clock, Attempt(130, timed_out=True), seconds=3600))
    assert (result.outcome, result.exit_code) == (TIMEOUT, EXIT_TIMEOUT)


def test_a_retry_never_outlives_the_timeout(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    settings = SchedulerSettings(retries=5, backoff_seconds=60, timeout_seconds=100)
    result = _execute(history, clock, ScriptedDbt(clock, TRANSIENT, seconds=50), settings=settings)
    assert (result.outcome, result.attempts) == (TRANSIENT_EXHAUSTED, 1)
    assert "no time left" in result.message and clock.sleeps == []


def test_busy_job_is_refused_and_the_holder_named(sessions: Callable[[str], History]) -> None:
    first, second, clock = sessions("first"), sessions("second"), FakeClock(SLOT)
    assert first.try_lock(job_lock(JOB.name)) is None
    dbt = ScriptedDbt(clock, OK)
    result = _execute(second, clock, dbt)
    assert (result.outcome, result.exit_code) == (BUSY, EXIT_BUSY) and dbt.calls == []
    assert result.holder is not None and "first" in result.holder.describe()
    assert second.last_runs(JOB.name, 10) == []  # nothing recorded
    first.unlock(job_lock(JOB.name))
    assert _execute(second, clock, dbt).outcome == SUCCESS


def test_waits_for_the_dbt_state_lock_within_the_timeout(sessions: Callable[[str], History]) -> None:
    other, history, clock = sessions("other job"), sessions("a"), FakeClock(SLOT)
    assert other.try_lock(DBT_STATE_LOCK) is None
    settings = SchedulerSettings(retries=0, backoff_seconds=0, timeout_seconds=20)
    result = _execute(history, clock, ScriptedDbt(clock, OK), settings=settings)
    assert result.outcome == TIMEOUT and "dbt state lock held by" in result.message and "other job" in result.message
    assert clock.sleeps == [1.0] * 20
    assert history.try_lock(job_lock(JOB.name)) is None


def test_stale_running_row_is_abandoned_then_caught_up(sessions: Callable[[str], History]) -> None:
    dead, clock = sessions("dead"), FakeClock(SLOT)
    alerts: list[RunResult] = []
    assert dead.try_lock(job_lock(JOB.name)) is None
    dead.start(JOB.name, SLOT, "schedule", clock.now())
    dead.close()  # kill -9: the session ends, its locks go, its row stays 'running'
    history = sessions("b")
    clock.advance(600)
    result = _execute(history, clock, ScriptedDbt(clock, OK), hook=alerts.append)
    assert result.outcome == SUCCESS
    rows = history.last_runs(JOB.name, 10)
    assert [(r.outcome, r.slot) for r in rows] == [(SUCCESS, SLOT), (ABANDONED, SLOT)]
    assert rows[1].ended_at == SLOT + timedelta(seconds=600)
    assert [a.outcome for a in alerts] == ["abandoned"]


def test_slot_done_meanwhile_is_not_run_again(sessions: Callable[[str], History]) -> None:
    first, second, clock = sessions("first"), sessions("second"), FakeClock(SLOT)
    assert _execute(first, clock, ScriptedDbt(clock, OK)).outcome == SUCCESS
    dbt = ScriptedDbt(clock, OK)
    result = _execute(second, clock, dbt)  # its look at the history predates the success
    assert (result.outcome, result.exit_code) == (ALREADY_DONE, EXIT_OK) and dbt.calls == []
    assert len(first.last_runs(JOB.name, 10)) == 1


def test_manual_run_has_no_slot_and_does_not_settle_one(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT + timedelta(minutes=1))
    assert _execute(history, clock, ScriptedDbt(clock, OK), slot=None).outcome == SUCCESS
    assert history.last_runs(JOB.name, 1)[0].slot is None
    due = due_slots(Schedule(HEL, (JOB,)), clock.now(), history.slot_runs, first_look=False, previous_look=SLOT)
    assert [(d.job.name, d.slot) for d in due] == [(JOB.name, SLOT)]


def test_interrupt_is_recorded_and_not_alerted(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    alerts: list[RunResult] = []

    def interrupted(job: Job, seconds_left: float) -> Attempt:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(
            JOB,
            SLOT,
            "schedule",
            history=history,
            runner=interrupted,
            settings=SETTINGS,
            clock=clock,
            hook=alerts.append,
        )
    assert history.last_runs(JOB.name, 1)[0].outcome == INTERRUPTED and alerts == []
    assert history.try_lock(job_lock(JOB.name)) is None and history.try_lock(DBT_STATE_LOCK) is None


def test_the_database_refuses_a_second_success_or_a_second_running_row(pg_conn: object) -> None:
    schema = f"cubes_test_sched_{uuid.uuid4().hex[:10]}"
    history = PgHistory.connect(schema, "t")
    try:
        first = history.start(JOB.name, SLOT, "schedule", SLOT)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            history.start(JOB.name, None, "manual", SLOT)
        history.finish(first, SLOT, SUCCESS, 0, 0, 1, (), "")
        second = history.start(JOB.name, SLOT, "catch-up", SLOT)
        with pytest.raises(psycopg2.errors.UniqueViolation):
            history.finish(second, SLOT, SUCCESS, 0, 0, 1, (), "")
    finally:
        history._execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(f"{schema}_audit")))
        history.close()


def test_unreachable_server_is_history_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGHOST", "127.0.0.1")
    monkeypatch.setenv("PGPORT", "1")  # nothing listens there: connection refused
    with pytest.raises(HistoryUnavailable, match=r"(?i)refused"):
        PgHistory.connect("cubes_test_nowhere", "t")


def test_connect_retries_then_gives_up() -> None:
    clock, calls = FakeClock(SLOT), []

    def refused() -> History:
        calls.append(clock.now())
        raise HistoryUnavailable("connection refused")

    with pytest.raises(HistoryUnavailable):
        connect_with_retries(refused, SETTINGS, clock, "run")
    assert len(calls) == 3 and clock.sleeps == [30, 60]
    flaky = iter([HistoryUnavailable("refused"), None])

    def second_time_lucky() -> History:
        problem = next(flaky)
        if problem:
            raise problem
        return MemoryHistory(MemoryDatabase(), "x")

    assert isinstance(connect_with_retries(second_time_lucky, SETTINGS, clock, "run"), MemoryHistory)


# --- jobs run together ---------------------------------------------------------------------


class ScriptedBatch:
    """A batch runner: one call for several jobs, each job's attempt given by name."""

    def __init__(self, clock: FakeClock, attempts: dict[str, Attempt], seconds: float = 60) -> None:
        self.clock, self.attempts, self.seconds = clock, attempts, seconds
        self.calls: list[list[str]] = []

    def __call__(self, jobs: Sequence[Job], seconds_left: float) -> list[Attempt]:
        self.calls.append([job.name for job in jobs])
        self.clock.advance(self.seconds)
        return [self.attempts[job.name] for job in jobs]


def _together(
    history: History, clock: FakeClock, batch: ScriptedBatch, dbt: ScriptedDbt, alerts: list[RunResult]
) -> list[RunResult]:
    return execute_together(
        [(JOB, SLOT, "schedule"), (OTHER, SLOT, "catch-up")],
        history=history,
        runner=dbt,
        batch_runner=batch,
        settings=SETTINGS,
        clock=clock,
        hook=alerts.append,
    )


def test_jobs_run_together_share_one_batch_and_keep_their_own_rows(sessions: Callable[[str], History]) -> None:
    history, clock, alerts = sessions("a"), FakeClock(SLOT), []
    batch, dbt = ScriptedBatch(clock, {JOB.name: OK, OTHER.name: OK}), ScriptedDbt(clock)
    results = _together(history, clock, batch, dbt, alerts)
    assert batch.calls == [[JOB.name, OTHER.name]] and dbt.calls == [] and alerts == []
    assert [(r.job, r.outcome, r.exit_code, r.attempts) for r in results] == [
        (JOB.name, SUCCESS, EXIT_OK, 1),
        (OTHER.name, SUCCESS, EXIT_OK, 1),
    ]
    another_process = sessions("b")
    for job, trigger in ((JOB, "schedule"), (OTHER, "catch-up")):
        [row] = history.last_runs(job.name, 10)
        assert (row.slot, row.trigger, row.outcome) == (SLOT, trigger, SUCCESS)
        assert another_process.try_lock(job_lock(job.name)) is None
    assert another_process.try_lock(DBT_STATE_LOCK) is None


def test_a_failure_in_the_batch_is_that_job_s_alone(sessions: Callable[[str], History]) -> None:
    history, clock, alerts = sessions("a"), FakeClock(SLOT), []
    stale = Attempt(1, stale_source=True, failed_nodes=("agg_messageCenter_full",), message="4 d old")
    batch, dbt = ScriptedBatch(clock, {JOB.name: stale, OTHER.name: OK}), ScriptedDbt(clock)
    results = _together(history, clock, batch, dbt, alerts)
    assert [(r.job, r.outcome, r.exit_code) for r in results] == [
        (JOB.name, STALE_SOURCE, EXIT_STALE_SOURCE),
        (OTHER.name, SUCCESS, EXIT_OK),
    ]
    assert [(alert.job, alert.outcome) for alert in alerts] == [(JOB.name, STALE_SOURCE)]
    assert history.last_runs(JOB.name, 1)[0].failed_nodes == ("agg_messageCenter_full",)
    assert history.last_runs(OTHER.name, 1)[0].outcome == SUCCESS


def test_a_transient_failure_in_the_batch_is_retried_for_that_job_alone(sessions: Callable[[str], History]) -> None:
    history, clock, alerts = sessions("a"), FakeClock(SLOT), []
    batch, dbt = ScriptedBatch(clock, {JOB.name: OK, OTHER.name: TRANSIENT}), ScriptedDbt(clock, OK)
    results = _together(history, clock, batch, dbt, alerts)
    assert [(r.outcome, r.attempts) for r in results] == [(SUCCESS, 1), (SUCCESS, 2)]
    assert len(dbt.calls) == 1 and clock.sleeps == [30]


def test_a_busy_job_stays_out_of_the_batch(sessions: Callable[[str], History]) -> None:
    history, other_process, clock, alerts = sessions("a"), sessions("b"), FakeClock(SLOT), []
    assert other_process.try_lock(job_lock(OTHER.name)) is None
    batch, dbt = ScriptedBatch(clock, {JOB.name: OK}), ScriptedDbt(clock, OK)
    results = _together(history, clock, batch, dbt, alerts)
    assert [r.outcome for r in results] == [SUCCESS, BUSY]
    assert batch.calls == [] and len(dbt.calls) == 1  # one job left: no batch to share


def test_an_interrupted_batch_ends_every_run_and_frees_every_lock(sessions: Callable[[str], History]) -> None:
    history, clock, alerts = sessions("a"), FakeClock(SLOT), []

    def interrupted(jobs: Sequence[Job], seconds_left: float) -> list[Attempt]:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute_together(
            [(JOB, SLOT, "schedule"), (OTHER, SLOT, "schedule")],
            history=history,
            runner=ScriptedDbt(clock),
            batch_runner=interrupted,
            settings=SETTINGS,
            clock=clock,
            hook=alerts.append,
        )
    another_process = sessions("b")
    for job in (JOB, OTHER):
        assert history.last_runs(job.name, 1)[0].outcome == INTERRUPTED
        assert another_process.try_lock(job_lock(job.name)) is None
    assert another_process.try_lock(DBT_STATE_LOCK) is None and alerts == []


# --- serve's decisions ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcomes", "first_look", "due"),
    [
        ([], False, True),
        ([], True, True),
        ([SUCCESS], True, False),
        ([FAILED, SUCCESS], True, False),
        ([FAILED], False, False),  # alerted; not retried while serving
        ([FAILED], True, True),  # a restart retries once
        ([TIMEOUT], False, False),
        ([TRANSIENT_EXHAUSTED], False, False),
        ([ABANDONED], False, True),  # its process died: caught up
        ([INTERRUPTED], False, True),
        ([RUNNING], False, True),  # live (the lock will say busy) or dead (abandoned, then run)
    ],
)
def test_is_due(outcomes: list[str], first_look: bool, due: bool) -> None:
    assert is_due(outcomes, first_look) is due


def test_only_the_latest_slot_is_due_and_late_ones_are_catch_ups() -> None:
    history = MemoryHistory(MemoryDatabase(), "a")
    now = datetime(2026, 3, 29, 12, 0, tzinfo=HEL)  # days of downtime before this: still one slot per job
    due = due_slots(SCHEDULE, now, history.slot_runs, first_look=True, previous_look=None)
    assert [(d.job.name, d.slot.isoformat(), d.trigger) for d in due] == [
        (JOB.name, "2026-03-29T04:00:00+03:00", "catch-up"),
        (OTHER.name, "2026-03-29T06:00:00+03:00", "catch-up"),
    ]
    on_time = due_slots(
        SCHEDULE,
        SLOT + timedelta(seconds=30),
        history.slot_runs,
        first_look=False,
        previous_look=SLOT - timedelta(seconds=40),
    )
    # The 03:00 job fired since the previous look; yesterday's 06:00 one was missed before it.
    assert [(d.job.name, d.trigger) for d in on_time] == [(OTHER.name, "catch-up"), (JOB.name, "schedule")]


def test_settled_slots_are_not_queried_again() -> None:
    history = MemoryHistory(MemoryDatabase(), "a")
    run_id = history.start(JOB.name, SLOT, "schedule", SLOT)
    history.finish(run_id, SLOT, SUCCESS, 0, 0, 1, (), "")
    queried: list[str] = []

    def runs(job: str, slot: datetime) -> list:  # type: ignore[type-arg]
        queried.append(job)
        return history.slot_runs(job, slot)

    settled: dict[str, datetime] = {}
    now = SLOT + timedelta(minutes=5)
    for _ in range(3):
        due_slots(Schedule(HEL, (JOB,)), now, runs, first_look=False, previous_look=now, settled=settled)
    assert queried == [JOB.name]


def test_serve_survives_an_unreachable_database_and_alerts_once() -> None:
    clock = FakeClock(SLOT + timedelta(minutes=1))
    alerts: list[str] = []
    attempts: list[datetime] = []
    database = MemoryDatabase()

    def open_history() -> History:
        attempts.append(clock.now())
        if len(attempts) <= 3:
            raise HistoryUnavailable("connection refused")
        return MemoryHistory(database, "serve")

    def execute_job(history: History, job: Job, slot: datetime, trigger: str) -> RunResult:
        return execute(
            job, slot, trigger, history=history, runner=ScriptedDbt(clock, OK), settings=SETTINGS, clock=clock
        )

    scheduler = Scheduler(
        Schedule(HEL, (JOB,)),
        open_history=open_history,
        execute_job=execute_job,
        clock=clock,
        on_unreachable=alerts.append,
    )
    outcomes = [[r.outcome for r in scheduler.tick()] for _ in range(3)]
    assert outcomes == [[UNREACHABLE]] * 3 and alerts == ["connection refused"]
    assert [r.outcome for r in scheduler.tick()] == [SUCCESS]
    assert database.rows[0].trigger == "catch-up"  # the first look that worked
    assert scheduler.serve(once=True) == EXIT_OK  # then nothing is due


# --- classification of a dbt run ----------------------------------------------------------


def _dbt_run(
    tmp_path: Path, exit_code: int, nodes: list[tuple[str, str]], log: str = "", timed_out: bool = False
) -> DbtRun:
    log_file = tmp_path / "console.log"
    log_file.write_text(log)
    results = [
        NodeResult(f"model.campaign_cubes.node{i}", status, message, None) for i, (status, message) in enumerate(nodes)
    ]
    return DbtRun(["dbt"], exit_code, 1.0, log_file, results, timed_out)


@pytest.mark.parametrize(
    ("exit_code", "nodes", "log", "transient"),
    [
        (2, [], "Encountered an error: Runtime Error", False),  # unknown: deterministic until shown otherwise
        (2, [], "Encountered an error:\nDatabase Error\n  the database system is starting up", True),
        (1, [("error", "could not serialize access due to concurrent update")], "", True),
        (1, [("error", "canceling statement due to conflict with recovery")], "", True),
        (1, [("error", 'role name "pg_monitor2" is reserved')], "", False),
        (1, [("error", 'invalid value for parameter "lock_timeout": "abc"')], "", False),
        (1, [("error", 'relation "nmsdelivery" does not exist')], "", False),
        (1, [("error", 'syntax error at or near "selec"'), ("error", "deadlock detected")], "", False),
        (2, [], "Encountered an error:\nDatabase Error\n  connection to server failed: Connection refused", True),
        (2, [], "Compilation Error in operation campaign_cubes-on-run-start-0\n  var reporting_timezone is", False),
        (2, [], "Parsing Error\n  Invalid models config", False),
        (2, [], "Error: Invalid value for '--select'", False),
        (1, [("error", "canceling statement due to lock timeout")], "", True),
        (1, [("error", "deadlock detected")], "", True),
        (1, [("error", 'connection to server at "x" failed: Connection refused')], "", True),
        (1, [("error", "terminating connection due to administrator command")], "", True),
        (1, [], "could not connect to server", True),  # nothing ran: the log says why
        (1, [("error", 'syntax error at or near "selec"')], "", False),
        (1, [("fail", "Got 2 results, configured to fail if != 0")], "", False),
        (1, [("error", "lock timeout"), ("fail", "Got 2 results")], "", False),  # bad data: retrying cannot help
        (1, [("error", "lock timeout"), ("error", "division by zero")], "", False),
        (1, [], "var reporting_timezone is 'Nowhere/Town'", False),
    ],
)
def test_classify(tmp_path: Path, exit_code: int, nodes: list[tuple[str, str]], log: str, transient: bool) -> None:
    attempt = classify(_dbt_run(tmp_path, exit_code, nodes, log))
    assert not attempt.ok and attempt.transient is transient
    assert attempt.failed_nodes == tuple(f"node{i}" for i in range(len(nodes)))
    assert attempt.message


@pytest.mark.parametrize(
    ("nodes", "log", "says"),
    [
        (
            [("error", "permission denied for table nmsdelivery")],
            "",
            "permission denied for table nmsdelivery: grant it to the build role",
        ),
        (
            [("error", "cannot execute CREATE TABLE in a read-only transaction")],
            "",
            "cannot execute CREATE TABLE in a read-only transaction: PGHOST points at a read-only server",
        ),
        (
            [],
            'Encountered an error:\nDatabase Error\n  connection to server at "h", port 5 failed: FATAL:  '
            'password authentication failed for user "builder"',
            "authentication failed for user builder",
        ),
    ],
)
def test_classify_configuration_errors(tmp_path: Path, nodes: list[tuple[str, str]], log: str, says: str) -> None:
    attempt = classify(_dbt_run(tmp_path, 1 if nodes else 2, nodes, log))
    assert attempt.config_error and not attempt.transient
    assert says in attempt.message


def test_a_configuration_error_exits_2_at_once() -> None:
    history, clock = MemoryHistory(MemoryDatabase(), "test"), FakeClock(SLOT)
    calls: list[float] = []

    def runner(job: Job, seconds_left: float) -> Attempt:
        calls.append(seconds_left)
        return Attempt(1, config_error=True, message="permission denied for schema x: grant it")

    result = execute(JOB, SLOT, "schedule", history=history, runner=runner, settings=SETTINGS, clock=clock)
    assert (result.outcome, result.exit_code, len(calls)) == (FAILED, EXIT_CONFIG, 1)
    assert result.message == "configuration: permission denied for schema x: grant it"


def test_an_unexpected_error_ends_the_run_as_failed_and_calls_the_hook() -> None:
    database, clock = MemoryDatabase(), FakeClock(SLOT)
    alerts: list[RunResult] = []

    def runner(job: Job, seconds_left: float) -> Attempt:
        raise FileNotFoundError("dbt is not installed in this environment")

    result = execute(
        JOB,
        SLOT,
        "schedule",
        history=MemoryHistory(database, "test"),
        runner=runner,
        settings=SETTINGS,
        clock=clock,
        hook=alerts.append,
    )
    assert (result.outcome, result.exit_code) == (FAILED, EXIT_UNEXPECTED)
    assert result.message == "unexpected error: FileNotFoundError: dbt is not installed in this environment"
    [row] = database.rows
    assert (row.outcome, row.exit_code, row.message) == (FAILED, EXIT_UNEXPECTED, result.message)
    assert alerts == [result]


def test_a_busy_work_folder_is_busy_not_a_timeout() -> None:
    history, clock = MemoryHistory(MemoryDatabase(), "test"), FakeClock(SLOT)
    result = execute(
        JOB,
        SLOT,
        "schedule",
        history=history,
        runner=lambda job, left: Attempt(-1, busy=True, message="work folder x used by pid 1"),
        settings=SETTINGS,
        clock=clock,
    )
    assert (result.outcome, result.exit_code, result.message) == (BUSY, EXIT_BUSY, "work folder x used by pid 1")


def test_classify_names_dbt_s_error_when_no_node_failed(tmp_path: Path) -> None:
    log = (
        "\x1b[0m09:21:13  Finished running  in 0.15s.\n\x1b[0m09:21:13  Encountered an error:\n"
        "Compilation Error in operation campaign_cubes-on-run-start-0 (./dbt_project.yml)\n"
        "  var reporting_timezone is 'Nowhere/Town', which PostgreSQL does not know\n  \n"
        "  > in macro validate_settings (macros/validate_settings.sql)\n"
    )
    attempt = classify(_dbt_run(tmp_path, 2, [], log))
    assert not attempt.transient
    assert attempt.message == (
        "Compilation Error in operation campaign_cubes-on-run-start-0 (./dbt_project.yml) | "
        "var reporting_timezone is 'Nowhere/Town', which PostgreSQL does not know"
    )


def test_classify_success_and_timeout(tmp_path: Path) -> None:
    assert classify(_dbt_run(tmp_path, 0, [("success", ""), ("warn", "unlisted codes")])).ok
    attempt = classify(_dbt_run(tmp_path, 130, [], timed_out=True))
    assert attempt.timed_out and not attempt.transient


# --- failure hook -----------------------------------------------------------------------

FAILURE = RunResult(
    JOB.name,
    SLOT,
    "schedule",
    FAILED,
    EXIT_DBT_FAILED,
    run_id=7,
    attempts=1,
    dbt_exit_code=1,
    failed_nodes=("grain_unique", "totals_match"),
    message="Got 2 results",
)


def test_hook_command_gets_the_failure_in_its_environment(tmp_path: Path) -> None:
    out = tmp_path / "hook.txt"
    command = (
        f'printf "%s|" "$CUBES_JOB" "$CUBES_SLOT" "$CUBES_OUTCOME" "$CUBES_EXIT_CODE" '
        f'"$CUBES_FAILED_NODES" "$CUBES_RUN_ID" "$CUBES_MESSAGE" > {out}'
    )
    failure_hook(SchedulerSettings(on_failure=command))(FAILURE)
    assert out.read_text() == (
        f"{JOB.name}|2026-03-29T04:00:00+03:00|failed|1|grain_unique totals_match|7|Got 2 results|"
    )


def test_hook_command_failure_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    failure_hook(SchedulerSettings(on_failure="echo nope >&2; exit 3"))(FAILURE)
    assert "on_failure command exited 3: nope" in caplog.text


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, dict[str, object]]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((self.headers["Content-Type"], json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_receives_json(caplog: pytest.LogCaptureFixture) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alert"
    try:
        failure_hook(SchedulerSettings(on_failure_url=url))(FAILURE)
        thread.join(10)
    finally:
        server.server_close()
    [(content_type, payload)] = _Receiver.received
    assert content_type == "application/json"
    assert payload["job"] == JOB.name and payload["slot"] == "2026-03-29T04:00:00+03:00"
    assert payload["outcome"] == "failed" and payload["exit_code"] == 1
    assert payload["failed_nodes"] == ["grain_unique", "totals_match"] and payload["host"]
    failure_hook(SchedulerSettings(on_failure_url=url))(FAILURE)  # nobody listens any more
    assert "on_failure_url POST failed" in caplog.text


# --- status ---------------------------------------------------------------------------------


def test_status_lines(sessions: Callable[[str], History]) -> None:
    history, clock = sessions("a"), FakeClock(SLOT)
    _execute(history, clock, ScriptedDbt(clock, TEST_FAILED))
    clock.advance(3600)
    _execute(history, clock, ScriptedDbt(clock, OK, seconds=90), slot=None)
    text = "\n".join(status_lines(SCHEDULE, history, clock.now(), [JOB, OTHER], 5))
    assert f"{JOB.name}: cron '0 3 * * *' in Europe/Helsinki" in text
    assert "latest slot  2026-03-29T04:00:00+03:00  failed (run 1, exit 1); no success" in text
    assert "next slot    2026-03-30T03:00:00+03:00" in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:2] == ["run", "trigger"])
    assert lines[header + 2].split()[:2] == ["2", "manual"] and "success" in lines[header + 2]
    assert "unique_agg_messagecenter_full_grain" in lines[header + 3] and "failed" in lines[header + 3]
    assert "latest slot  2026-03-28T06:00:00+02:00  not run yet" in text and "no runs recorded" in text


def test_serve_says_busy_once_and_runs_the_slot_when_free(caplog: pytest.LogCaptureFixture) -> None:
    database, clock = MemoryDatabase(), FakeClock(SLOT + timedelta(minutes=1))
    other = MemoryHistory(database, "orchestrate.py run pid 42 on elsewhere")
    assert other.try_lock(job_lock(JOB.name)) is None

    def execute_job(history: History, job: Job, slot: datetime, trigger: str) -> RunResult:
        return execute(
            job, slot, trigger, history=history, runner=ScriptedDbt(clock, OK), settings=SETTINGS, clock=clock
        )

    scheduler = Scheduler(
        Schedule(HEL, (JOB,)),
        open_history=lambda: MemoryHistory(database, "serve"),
        execute_job=execute_job,
        clock=clock,
    )
    outcomes = []
    for _ in range(3):
        outcomes += [r.outcome for r in scheduler.tick()]
        clock.advance(60)
    assert outcomes == [BUSY] * 3
    assert caplog.text.count("busy: another run holds its lock: 'orchestrate.py run pid 42 on elsewhere'") == 1
    other.close()
    assert [(r.outcome, r.trigger) for r in scheduler.tick()] == [(SUCCESS, "catch-up")]


def test_serve_catches_up_both_jobs_in_one_batch() -> None:
    # serve starts after both slots of the day passed: one catch-up each, in one dbt process
    database, clock = MemoryDatabase(), FakeClock(datetime(2026, 3, 30, 7, 0, tzinfo=HEL))
    batch = ScriptedBatch(clock, {JOB.name: OK, OTHER.name: TEST_FAILED})

    def execute_job(history: History, job: Job, slot: datetime, trigger: str) -> RunResult:
        raise AssertionError(f"{job.name} was run on its own")

    def execute_due(history: History, due: list[Due]) -> list[RunResult]:
        return execute_together(
            [(each.job, each.slot, each.trigger) for each in due],
            history=history,
            runner=ScriptedDbt(clock),
            batch_runner=batch,
            settings=SETTINGS,
            clock=clock,
        )

    scheduler = Scheduler(
        SCHEDULE,
        open_history=lambda: MemoryHistory(database, "serve"),
        execute_job=execute_job,
        execute_together=execute_due,
        clock=clock,
    )
    results = scheduler.tick()
    assert batch.calls == [[JOB.name, OTHER.name]]
    assert [(r.job, r.outcome, r.trigger) for r in results] == [
        (JOB.name, SUCCESS, "catch-up"),
        (OTHER.name, FAILED, "catch-up"),
    ]
    assert scheduler.tick() == []  # the failed slot is settled until serve restarts

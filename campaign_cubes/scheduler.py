"""`serve`: which slot is due now, given the clock and the history; then run it.

The rules, all decided from the history table so that they survive restarts:

* only the latest slot of each job (`schedule.latest_slot`) is ever considered, so
  downtime costs at most one catch-up run per job, never a storm;
* a slot with a successful run is never run again;
* a slot whose run failed (model/test failure, timeout, transient failures
  exhausted) is not retried while serving: the failure hook told someone;
* the first look after `serve` starts runs the latest slot once if it has no
  success, even if it failed before: restarting the service is how an operator
  says "try again";
* a slot whose run died (abandoned) or was interrupted is run again.

The lock decides the rest: a slot another process is running is reported busy
and looked at again on the next tick.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from campaign_cubes.history import (
    FAILED,
    RUNNING,
    STALE_SOURCE,
    SUCCESS,
    TIMEOUT,
    TRANSIENT_EXHAUSTED,
    History,
    HistoryUnavailable,
    RunRecord,
    job_lock,
)
from campaign_cubes.jobs import Clock
from campaign_cubes.outcomes import BUSY, EXIT_BUSY, EXIT_DATABASE, EXIT_OK, UNREACHABLE, RunResult
from campaign_cubes.timetable import Job, Schedule, latest_slot, upcoming

log = logging.getLogger(__name__)

# Outcomes after which a running `serve` leaves the slot alone.
SETTLED_FAILURES = frozenset({FAILED, TIMEOUT, TRANSIENT_EXHAUSTED, STALE_SOURCE})
# `serve` wakes at least this often to re-read the wall clock, so that a suspended
# machine or a clock change cannot make it sleep past a slot, and busy slots are retried.
MAX_SLEEP_SECONDS = 60.0
# A wake-up this much later than planned means a suspend or a clock jump.
LATE_WAKE_SECONDS = 300.0

ExecuteJob = Callable[[History, Job, datetime, str], RunResult]
ExecuteTogether = Callable[[History, list["Due"]], list[RunResult]]  # several due jobs, one dbt process


@dataclass(frozen=True)
class Due:
    job: Job
    slot: datetime
    trigger: str  # "schedule": fired since the previous look; "catch-up": missed before it


def is_due(outcomes: Collection[str], first_look: bool) -> bool:
    if SUCCESS in outcomes:
        return False
    return first_look or not (set(outcomes) & SETTLED_FAILURES)


def due_slots(
    schedule: Schedule,
    now: datetime,
    runs: Callable[[str, datetime], list[RunRecord]],
    *,
    first_look: bool,
    previous_look: datetime | None,
    settled: dict[str, datetime] | None = None,
) -> list[Due]:
    """The slots to run now, oldest first. `settled` caches slots known not due (no query)."""
    found: list[Due] = []
    for job in schedule.jobs:
        slot = latest_slot(job.cron, schedule.timezone, now)
        # Compared in UTC: aware datetimes sharing a tzinfo compare by wall time, ignoring fold.
        if slot is None or (settled is not None and settled.get(job.name) == slot.astimezone(UTC)):
            continue
        if is_due([run.outcome for run in runs(job.name, slot)], first_look):
            on_time = previous_look is not None and slot > previous_look
            found.append(Due(job, slot, "schedule" if on_time else "catch-up"))
        elif settled is not None:
            settled[job.name] = slot.astimezone(UTC)
    return sorted(found, key=lambda due: due.slot)


class Scheduler:
    """The serve loop, with its clock, history session and job execution injected."""

    def __init__(
        self,
        schedule: Schedule,
        *,
        open_history: Callable[[], History],
        execute_job: ExecuteJob,
        clock: Clock,
        execute_together: ExecuteTogether | None = None,
        on_unreachable: Callable[[str], None] = lambda message: None,
        max_sleep: float | None = MAX_SLEEP_SECONDS,
    ) -> None:
        self.schedule = schedule
        self.open_history = open_history
        self.execute_job = execute_job
        self.execute_together = execute_together
        self.clock = clock
        self.on_unreachable = on_unreachable
        self.max_sleep = max_sleep  # None: sleep straight to the next fire (simulations)
        self._history: History | None = None
        self._first_look = True
        self._previous_look: datetime | None = None
        self._settled: dict[str, datetime] = {}
        self._busy_told: set[tuple[str, datetime]] = set()
        self._unreachable = False
        self._announced: tuple[str, datetime] | None = None

    def _session(self) -> History:
        if self._history is None:
            self._history = self.open_history()
        return self._history

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None

    def tick(self) -> list[RunResult]:
        """Look at the clock and the history once; run what is due; return the results."""
        now = self.clock.now().astimezone(UTC)
        try:
            history = self._session()
            due = due_slots(
                self.schedule,
                now,
                history.slot_runs,
                first_look=self._first_look,
                previous_look=self._previous_look,
                settled=self._settled,
            )
            results = self._run_all(history, due)
        except HistoryUnavailable as problem:
            self.close()  # reconnect on the next tick
            if not self._unreachable:  # alert once per outage, not once per minute
                log.error("serve: database unreachable: %s; retrying every tick", problem)
                self.on_unreachable(str(problem))
            self._unreachable = True
            return [RunResult("*", None, "schedule", UNREACHABLE, EXIT_DATABASE, message=str(problem))]
        if self._unreachable:
            log.info("serve: database reachable again")
        self._unreachable = False
        self._first_look = False
        self._previous_look = now
        return results

    def _run_all(self, history: History, due: list[Due]) -> list[RunResult]:
        """Run the due slots: several at once share one dbt process (execute_together)."""
        results: dict[int, RunResult] = {}
        ready: list[tuple[int, Due]] = []
        for index, each in enumerate(due):
            key = (each.job.name, each.slot)
            if key in self._busy_told and history.holder(job_lock(each.job.name)) is not None:
                # Still busy: said once already, not once a minute.
                results[index] = RunResult(each.job.name, each.slot, each.trigger, BUSY, EXIT_BUSY)
                continue
            if each.trigger == "catch-up" and key not in self._busy_told:
                log.info("%s: catching up slot %s (no successful run)", each.job.name, each.slot.isoformat())
            ready.append((index, each))
        if len(ready) > 1 and self.execute_together is not None:
            ran = self.execute_together(history, [each for _, each in ready])
        else:
            ran = [self.execute_job(history, each.job, each.slot, each.trigger) for _, each in ready]
        for (index, each), result in zip(ready, ran, strict=True):
            if result.outcome == BUSY:
                self._busy_told.add((each.job.name, each.slot))  # looked at again next tick, quietly
            results[index] = result
        return [results[index] for index in range(len(due))]

    def seconds_to_sleep(self) -> float:
        name, moment = upcoming(self.schedule, self.clock.now(), 1)[0]
        if (name, moment) != self._announced:  # one line per new fire, not one per tick
            log.info("serve: next run %s at %s", name, moment.isoformat())
            self._announced = (name, moment)
        wait = max(0.0, (moment - self.clock.now()).total_seconds())
        return wait if self.max_sleep is None else min(wait, self.max_sleep)

    def serve(self, *, once: bool = False, until: Callable[[], bool] = lambda: False) -> int:
        """Tick, sleep until the next fire (or max_sleep), tick... `once`: one tick, its exit code."""
        try:
            while True:
                results = self.tick()
                if once:
                    return next((r.exit_code for r in results if r.exit_code != EXIT_OK), EXIT_OK)
                self._sleep()
                if until():
                    return EXIT_OK
        finally:
            self.close()

    def _sleep(self) -> None:
        seconds = self.seconds_to_sleep()
        planned = self.clock.now().timestamp() + seconds
        self.clock.sleep(seconds)
        late = self.clock.now().timestamp() - planned
        if late > LATE_WAKE_SECONDS:
            log.warning(
                "serve: woke %.0f s late (suspended machine or clock change); "
                "the latest slot of each job is checked now",
                late,
            )


# --- status -------------------------------------------------------------------------


def _when(moment: datetime | None, schedule: Schedule) -> str:
    return moment.astimezone(schedule.timezone).isoformat(timespec="seconds") if moment else "-"


def _duration(run: RunRecord) -> str:
    if run.ended_at is None:
        return "-"
    seconds = (run.ended_at - run.started_at).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _slot_state(runs: list[RunRecord], live: bool) -> str:
    if not runs:
        return "not run yet"
    success = next((run for run in runs if run.outcome == SUCCESS), None)
    if success is not None:
        return f"success (run {success.run_id})"
    last = runs[-1]
    if last.outcome == RUNNING:
        return (
            f"running (run {last.run_id})"
            if live
            else f"run {last.run_id} died (lock free); the next run of this job marks it abandoned"
        )
    return f"{last.outcome} (run {last.run_id}, exit {last.exit_code}); no success"


def status_lines(schedule: Schedule, history: History, now: datetime, jobs: list[Job], limit: int) -> list[str]:
    """Per job: its latest slot and how it went, the next slot, who runs it now, the last runs."""
    from campaign_cubes.show import format_table

    lines: list[str] = []
    for job in jobs:
        holder = history.holder(job_lock(job.name))
        slot = latest_slot(job.cron, schedule.timezone, now)
        [(_, next_slot)] = upcoming(schedule, now, 1, job=job.name)
        lines.append(f"{job.name}: cron '{job.cron}' in {schedule.timezone.key}")
        if slot is not None:
            lines.append(
                f"  latest slot  {_when(slot, schedule)}  "
                f"{_slot_state(history.slot_runs(job.name, slot), holder is not None)}"
            )
        lines.append(f"  next slot    {_when(next_slot, schedule)}")
        if holder is not None:
            lines.append(f"  running now  lock held by {holder.describe()}")
        runs = history.last_runs(job.name, limit)
        if not runs:
            lines += ["  no runs recorded", ""]
            continue
        table = format_table(
            ["run", "trigger", "slot", "started", "duration", "outcome", "exit", "attempts", "failed nodes"],
            [
                [
                    run.run_id,
                    run.trigger,
                    _when(run.slot, schedule),
                    _when(run.started_at, schedule),
                    _duration(run),
                    run.outcome,
                    "-" if run.exit_code is None else run.exit_code,
                    run.attempts,
                    ", ".join(run.failed_nodes) or "-",
                ]
                for run in runs
            ],
        )
        lines += ["  " + line.rstrip() for line in table.splitlines()] + [""]
    return lines


def status_document(schedule: Schedule, history: History, now: datetime, jobs: list[Job], limit: int) -> dict[str, Any]:
    """What status_lines says, for machines (`status --json`): instants in ISO 8601."""

    def instant(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    documents = []
    for job in jobs:
        holder = history.holder(job_lock(job.name))
        slot = latest_slot(job.cron, schedule.timezone, now)
        [(_, next_slot)] = upcoming(schedule, now, 1, job=job.name)
        documents.append(
            {
                "job": job.name,
                "cron": job.cron,
                "selector": job.selector,
                "latest_slot": instant(slot),
                "latest_slot_state": (
                    _slot_state(history.slot_runs(job.name, slot), holder is not None) if slot is not None else None
                ),
                "next_slot": instant(next_slot),
                "holder": None if holder is None else {**asdict(holder), "since": instant(holder.since)},
                "last_runs": [
                    {
                        **asdict(run),
                        "slot": instant(run.slot),
                        "started_at": instant(run.started_at),
                        "ended_at": instant(run.ended_at),
                        "failed_nodes": list(run.failed_nodes),
                    }
                    for run in history.last_runs(job.name, limit)
                ],
            }
        )
    return {"timezone": schedule.timezone.key, "now": now.isoformat(), "jobs": documents}

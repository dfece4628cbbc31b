"""Two years of `serve` on an injected clock: exactly one successful run per job per local day.

The real Scheduler and `execute` run against a simulated world: a clock that
oversleeps, jumps back, suspends for hours; a process that is killed while idle or
in the middle of a run and restarted after a random downtime; a fake dbt that takes
minutes, fails transiently, and fails for good on some slots. The history is the
in-memory store over two years in six zones; the same simulation over DST months
on the real PostgreSQL table yields the very same history.
"""

from __future__ import annotations

import random
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes.failures import Attempt
from campaign_cubes.history import ABANDONED, FAILED, RUNNING, SUCCESS, History, PgHistory, RunRecord
from campaign_cubes.jobs import execute
from campaign_cubes.outcomes import BUSY, RunResult
from campaign_cubes.scheduler import Scheduler
from campaign_cubes.timetable import Job, Schedule, SchedulerSettings, fire_times, latest_slot
from memory_history import MemoryDatabase, MemoryHistory
from support import FakeClock

UTC = UTC
SETTINGS = SchedulerSettings(retries=2, backoff_seconds=60, timeout_seconds=3 * 3600)
HOUR = 3600.0

# Two jobs per zone, at local times that fall in a gap or a fold on DST days.
ZONES = {
    "Europe/Helsinki": ("0 3 * * *", "0 6 * * *"),  # 03:00 in the March gap and the October fold
    "America/New_York": ("30 2 * * *", "30 1 * * *"),  # 02:30 gap; 01:30 fold
    "Australia/Lord_Howe": ("15 2 * * *", "45 1 * * *"),  # 30-minute gap and fold
    "America/Santiago": ("0 0 * * *", "30 23 * * *"),  # midnight gap; 23:30 fold
    "Europe/London": ("30 1 * * *", "0 6 * * *"),  # 01:30 in the gap and the fold
    "Pacific/Chatham": ("0 3 * * *", "30 6 * * *"),  # +12:45/+13:45, gap and fold 02:45-03:45
}


class Crash(BaseException):
    """The process died (kill -9, power cut): no except clause of the code under test catches it."""


@dataclass
class Perturbations:
    crash_idle: float = 0.01  # per sleep of `serve`
    crash_in_run: float = 0.02  # per dbt attempt
    suspend: float = 0.01  # per sleep: the machine sleeps 1 to 20 hours
    clock_back: float = 0.01  # per sleep: NTP steps the clock back up to 10 minutes
    transient: float = 0.08  # per attempt, at most `retries` times per slot
    fail_slot: float = 0.01  # per slot: every attempt fails (a data test)


@dataclass
class Stats:
    crashes_idle: int = 0
    crashes_in_run: int = 0
    suspends: int = 0
    clock_backs: int = 0
    transients: int = 0
    fail_slots: set[tuple[str, datetime]] = field(default_factory=set)


class SimClock(FakeClock):
    """Wall clock and monotonic clock; sleeps of `serve` (idle) are perturbed."""

    def __init__(self, start: datetime, rng: random.Random, chances: Perturbations, stats: Stats) -> None:
        super().__init__(start)
        self.rng, self.chances, self.stats = rng, chances, stats
        self.idle = True
        self.horizon: Callable[[], datetime] = lambda: self.wall + timedelta(days=1)

    def sleep(self, seconds: float) -> None:
        if not self.idle:  # backoff and lock waits inside a run: plain time
            self.advance(seconds)
            return
        rng, chances = self.rng, self.chances
        if rng.random() < chances.crash_idle:
            self.stats.crashes_idle += 1
            self.advance(rng.uniform(0, seconds))
            raise Crash
        late = rng.uniform(0, 90)  # timers fire late
        if rng.random() < chances.suspend:
            room = (self.horizon() - self.wall).total_seconds() - seconds - late - 60
            if room > HOUR:
                self.stats.suspends += 1
                late += rng.uniform(HOUR, min(20 * HOUR, room))
        self.advance(seconds + late)
        if rng.random() < chances.clock_back:
            self.stats.clock_backs += 1
            self.wall -= timedelta(seconds=rng.uniform(1, 600))


class SimDbt:
    """A fake dbt: takes 1 to 40 minutes; may crash the process, fail transiently, or fail a slot."""

    def __init__(self, clock: SimClock, rng: random.Random, chances: Perturbations, stats: Stats) -> None:
        self.clock, self.rng, self.chances, self.stats = clock, rng, chances, stats
        self.slot: datetime | None = None
        self.transients: Counter[tuple[str, datetime]] = Counter()
        self.decided: dict[tuple[str, datetime], bool] = {}

    def __call__(self, job: Job, seconds_left: float) -> Attempt:
        assert self.slot is not None
        key = (job.name, self.slot)
        rng = self.rng
        if key not in self.decided:
            self.decided[key] = rng.random() < self.chances.fail_slot
            if self.decided[key]:
                self.stats.fail_slots.add(key)
        duration = rng.uniform(60, 40 * 60)
        if rng.random() < self.chances.crash_in_run:
            self.stats.crashes_in_run += 1
            self.clock.advance(rng.uniform(0, duration))
            raise Crash
        self.clock.advance(duration)
        if self.decided[key]:
            return Attempt(1, failed_nodes=("agg_grain_unique",), message="Got 3 results, configured to fail if != 0")
        if self.transients[key] < SETTINGS.retries and rng.random() < self.chances.transient:
            self.transients[key] += 1
            self.stats.transients += 1
            return Attempt(2, transient=True, message="could not connect to server: Connection refused")
        return Attempt(0)


@dataclass(frozen=True)
class Call:
    job: str
    slot: datetime
    trigger: str
    incarnation: int


@dataclass
class World:
    schedule: Schedule
    calls: list[Call]
    results: list[RunResult]
    stats: Stats
    incarnations: int


def simulate(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    open_history: Callable[[int], History],
    seed: int,
    chances: Perturbations,
) -> World:
    """`serve` from `start` to `end`, killed and restarted at random; `open_history(incarnation)`."""
    rng = random.Random(seed)
    stats = Stats()
    clock = SimClock(start, rng, chances, stats)
    dbt = SimDbt(clock, rng, chances, stats)
    calls: list[Call] = []
    results: list[RunResult] = []
    done: set[tuple[str, datetime]] = set()  # slots with a finished attempt
    incarnation = 0
    end = end.astimezone(UTC)

    def horizon() -> datetime:
        """The latest restart or wake-up that loses no slot: before the next fire of a job whose
        latest slot is not done yet, else before its second next fire. Longer outages lose slots
        by design (one catch-up, no storm): test_downtime_of_days_gives_one_catch_up_not_a_storm."""
        now = clock.now()
        limits = []
        for job in schedule.jobs:
            latest = latest_slot(job.cron, schedule.timezone, now)
            first, second = fire_times(job.cron, schedule.timezone, now, 2)
            settled = latest is not None and (job.name, latest.astimezone(UTC)) in done
            limits.append(second if settled else first)
        return min(limits)

    clock.horizon = horizon
    while clock.now() < end:
        incarnation += 1
        this = incarnation

        def execute_job(history: History, job: Job, slot: datetime, trigger: str, this: int = this) -> RunResult:
            calls.append(Call(job.name, slot.astimezone(UTC), trigger, this))
            dbt.slot, clock.idle = slot.astimezone(UTC), False
            try:
                result = execute(job, slot, trigger, history=history, runner=dbt, settings=SETTINGS, clock=clock)
            finally:
                clock.idle = True
            results.append(result)
            if result.outcome != BUSY:
                done.add((job.name, slot.astimezone(UTC)))
            return result

        scheduler = Scheduler(
            schedule,
            open_history=lambda this=this: open_history(this),
            execute_job=execute_job,
            clock=clock,
            max_sleep=None,
        )
        try:
            scheduler.serve(until=lambda: clock.now() >= end)
        except Crash:
            # Down for minutes to most of a day, within the horizon (see there).
            room = (horizon() - clock.now()).total_seconds() - 60
            clock.advance(rng.uniform(0, max(0.0, min(room, 20 * HOUR if rng.random() < 0.3 else 2 * HOUR))))
    return World(schedule, calls, results, stats, incarnation)


def _schedule(zone_name: str, crons: tuple[str, ...]) -> Schedule:
    jobs = tuple(Job(f"job{i}_{cron.replace(' ', '_').replace('*', 'x')}", cron, "x") for i, cron in enumerate(crons))
    return Schedule(ZoneInfo(zone_name), jobs)


def _policy_slots(schedule: Schedule, job: Job, first: date, last: date) -> dict[date, datetime]:
    """The policy's fire instant of each local day (fire_times is oracle-tested in test_schedule.py)."""
    zone = schedule.timezone
    after = datetime.combine(first, time(0), zone) - timedelta(seconds=1)
    count = (last - first).days + 1
    fires = fire_times(job.cron, zone, after, count)
    return {fire.date(): fire.astimezone(UTC) for fire in fires}


def check_world(world: World, rows: list[RunRecord], first: date, last: date) -> None:
    """The invariants: exactly one success per job per local day; no duplicate; no storm."""
    schedule, zone = world.schedule, world.schedule.timezone
    for job in schedule.jobs:
        expected = _policy_slots(schedule, job, first, last)
        assert sorted(expected) == [first + timedelta(days=n) for n in range((last - first).days + 1)]
        in_range = [
            row
            for row in rows
            if row.job == job.name and row.slot is not None and first <= row.slot.astimezone(zone).date() <= last
        ]
        successes = Counter(row.slot for row in in_range if row.outcome == SUCCESS)
        failed_slots = {slot for name, slot in world.stats.fail_slots if name == job.name}
        for day, slot in expected.items():
            want = 0 if slot in failed_slots else 1
            assert successes[slot] == want, f"{job.name} {day}: {successes[slot]} successes, expected {want}"
        assert set(successes) <= set(expected.values()), "a success on an instant the policy does not fire"
        for row in in_range:
            assert row.slot is not None and row.slot in expected.values(), f"not a slot of the policy: {row}"
            assert row.started_at >= row.slot, f"ran before its slot: {row}"
            assert row.outcome != RUNNING, f"left running: {row}"
            if row.slot in failed_slots:
                assert row.outcome in (FAILED, ABANDONED), row
        # A slot that failed for good is tried once per process lifetime, never in a loop.
        per_life = Counter((call.slot, call.incarnation) for call in world.calls if call.job == job.name)
        assert max(per_life.values()) == 1, "a process ran the same slot twice"
        # Every abandoned run (a killed process) is followed by exactly one catch-up that ends it.
        for row in in_range:
            if row.outcome == ABANDONED and row.slot not in failed_slots:
                later = [r for r in in_range if r.slot == row.slot and r.run_id > row.run_id]
                assert later and later[-1].outcome == SUCCESS and [r.outcome for r in later].count(SUCCESS) == 1, (
                    row,
                    later,
                )
    assert not any(result.outcome == BUSY for result in world.results), "one process cannot be busy"


def _all_rows(history: History, schedule: Schedule) -> list[RunRecord]:
    rows = [row for job in schedule.jobs for row in history.last_runs(job.name, 1_000_000)]
    return sorted(rows, key=lambda row: row.run_id)


FIRST_DAY, LAST_DAY = date(2025, 1, 1), date(2026, 12, 31)


@pytest.mark.parametrize("zone_name", sorted(ZONES))
def test_two_years_one_success_per_job_per_local_day(zone_name: str) -> None:
    schedule = _schedule(zone_name, ZONES[zone_name])
    zone = schedule.timezone
    # Started the day before at noon, so the first look's catch-up is outside the checked range.
    start = datetime.combine(FIRST_DAY - timedelta(days=1), time(12), zone)
    end = datetime.combine(LAST_DAY + timedelta(days=2), time(0), zone)
    database = MemoryDatabase()
    world = simulate(
        schedule,
        start,
        end,
        lambda n: MemoryHistory(database, f"serve {n}", pid=n),
        seed=sum(map(ord, zone_name)),
        chances=Perturbations(),
    )
    check_world(world, database.rows, FIRST_DAY, LAST_DAY)
    stats = world.stats
    # The simulation really went through what it claims to test.
    assert stats.crashes_in_run >= 10 and stats.crashes_idle >= 5 and stats.suspends >= 5
    assert stats.clock_backs >= 5 and stats.transients >= 50 and len(stats.fail_slots) >= 5
    triggers = Counter(call.trigger for call in world.calls)
    assert triggers["catch-up"] >= 10 and triggers["schedule"] >= 1000


def test_dst_days_are_in_the_simulation() -> None:
    """Each zone's two-year range has spring-forward and fall-back days in it."""
    for zone_name in ZONES:
        zone = ZoneInfo(zone_name)
        offsets = {
            (datetime.combine(FIRST_DAY, time(12), zone) + timedelta(days=n)).utcoffset()
            for n in range((LAST_DAY - FIRST_DAY).days)
        }
        assert len(offsets) == 2, zone_name


def test_downtime_of_days_gives_one_catch_up_not_a_storm() -> None:
    """Down for five days: on restart, each job runs its latest slot once; the missed ones never."""
    schedule = _schedule("Europe/Helsinki", ZONES["Europe/Helsinki"])
    zone = schedule.timezone
    database = MemoryDatabase()
    quiet = Perturbations(0, 0, 0, 0, 0, 0)
    start = datetime(2026, 3, 20, 0, 0, tzinfo=zone)
    simulate(schedule, start, start + timedelta(days=3), lambda n: MemoryHistory(database, "a"), 1, quiet)
    before = len(database.rows)
    # Five days later (across the DST change), serve starts again at 12:00.
    restart = datetime(2026, 3, 28, 12, 0, tzinfo=zone)
    world = simulate(schedule, restart, restart + timedelta(hours=1), lambda n: MemoryHistory(database, "b"), 2, quiet)
    new = database.rows[before:]
    assert [
        (row.job, row.slot.astimezone(zone).isoformat() if row.slot else None, row.trigger, row.outcome) for row in new
    ] == [
        ("job0_0_3_x_x_x", "2026-03-28T03:00:00+02:00", "catch-up", SUCCESS),
        ("job1_0_6_x_x_x", "2026-03-28T06:00:00+02:00", "catch-up", SUCCESS),
    ]
    assert len(world.calls) == 2


# --- the same simulation on the real PostgreSQL table -------------------------------------


@pytest.fixture
def history_schema(pg_conn: connection) -> Iterator[str]:
    """A published-schema name for one test; its _audit schema (the history) is dropped after."""
    name = f"cubes_test_sched_{uuid.uuid4().hex[:10]}"
    yield name
    with pg_conn.cursor() as cursor:
        for schema in (name, f"{name}_audit"):
            cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


DENSE = Perturbations(crash_idle=0.05, crash_in_run=0.1, suspend=0.05, clock_back=0.05, transient=0.2, fail_slot=0.05)
PG_RUNS = [
    # The project's own schedule, the full two years, on the real table.
    ("Europe/Helsinki", FIRST_DAY, LAST_DAY, Perturbations()),
    # Weeks around DST changes, with crashes, suspends and retries ten times as dense.
    ("Europe/Helsinki", date(2026, 3, 20), date(2026, 4, 5), DENSE),
    ("Europe/Helsinki", date(2026, 10, 18), date(2026, 11, 2), DENSE),
    ("Australia/Lord_Howe", date(2025, 9, 28), date(2025, 10, 12), DENSE),
    ("Australia/Lord_Howe", date(2026, 3, 29), date(2026, 4, 12), DENSE),
    ("America/New_York", date(2026, 3, 1), date(2026, 3, 15), DENSE),
    ("America/New_York", date(2026, 10, 25), date(2026, 11, 8), DENSE),
]


@pytest.mark.parametrize(("zone_name", "first", "last", "chances"), PG_RUNS)
def test_real_table_gives_the_same_history_as_memory(
    history_schema: str, zone_name: str, first: date, last: date, chances: Perturbations
) -> None:
    """Same world, same seed: PostgreSQL and the in-memory store record identical histories."""
    schedule = _schedule(zone_name, ZONES[zone_name])
    zone = schedule.timezone
    start = datetime.combine(first - timedelta(days=1), time(12), zone)
    end = datetime.combine(last + timedelta(days=2), time(0), zone)
    database = MemoryDatabase()
    memory = simulate(schedule, start, end, lambda n: MemoryHistory(database, f"serve {n}", pid=n), 7, chances)

    sessions: list[PgHistory] = []

    def open_pg(n: int) -> History:
        sessions.append(PgHistory.connect(history_schema, f"sim {n}"))
        return sessions[-1]

    real = simulate(schedule, start, end, open_pg, 7, chances)
    reader = PgHistory.connect(history_schema, "check")
    try:
        rows = _all_rows(reader, schedule)
    finally:
        reader.close()
    check_world(real, rows, first, last)

    def shape(records: list[RunRecord]) -> list[tuple[object, ...]]:
        return [(r.job, r.slot, r.trigger, r.outcome, r.attempts, r.started_at, r.ended_at) for r in records]

    assert shape(rows) == shape(database.rows)
    assert real.calls == memory.calls
    assert real.stats.crashes_in_run + real.stats.crashes_idle >= 2
    assert all(session.connection.closed for session in sessions), "a crashed session stayed open"


def test_failure_is_not_retried_while_serving_but_once_after_a_restart() -> None:
    schedule = _schedule("UTC", ("0 3 * * *",))
    database = MemoryDatabase()
    quiet = Perturbations(0, 0, 0, 0, 0, 1.0)  # every slot fails
    start = datetime(2026, 1, 1, 2, 0, tzinfo=UTC)
    first = simulate(
        schedule, start, start + timedelta(days=1, hours=2), lambda n: MemoryHistory(database, "a"), 1, quiet
    )
    # Yesterday's slot (first look), then each day's, once: 26 hours of 1-minute ticks never retry.
    assert [(c.slot.day, c.trigger) for c in first.calls] == [(31, "catch-up"), (1, "schedule"), (2, "schedule")]
    restart = datetime(2026, 1, 2, 5, 0, tzinfo=UTC)
    world = simulate(schedule, restart, restart + timedelta(hours=6), lambda n: MemoryHistory(database, "b"), 2, quiet)
    assert [(c.slot.day, c.trigger) for c in world.calls] == [(2, "catch-up")]  # a restart retries once
    assert [(row.slot.day if row.slot else 0, row.outcome) for row in database.rows] == [
        (31, FAILED),
        (1, FAILED),
        (2, FAILED),
        (2, FAILED),
    ]

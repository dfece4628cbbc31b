"""Tests for campaign_cubes.timetable: DST policy, merging, catch-up slot, configuration."""

from __future__ import annotations

import itertools
import os
import time as time_module
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from campaign_cubes import timetable as sched
from campaign_cubes.timetable import (
    ConfigError,
    Job,
    Schedule,
    fire_times,
    host_timezone_name,
    latest_slot,
    load_schedule,
    load_zone,
    upcoming,
)

UTC = UTC
REPO = Path(__file__).resolve().parents[2]
FIRST_DAY, LAST_DAY = date(2025, 1, 1), date(2026, 12, 31)


@pytest.fixture(autouse=True)
def _no_zone_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the developer's environment out of every test."""
    monkeypatch.delenv(sched.ENV_TIMEZONE, raising=False)


# --- independent brute-force oracle ----------------------------------------------


def _max_offset(zone: ZoneInfo) -> timedelta:
    """Largest UTC offset the zone uses around the test range (hourly sampling)."""
    start = datetime(2024, 6, 1, tzinfo=UTC)
    return max(
        (start + timedelta(hours=h)).astimezone(zone).utcoffset() or timedelta(0) for h in range(0, 24 * 365 * 3)
    )


def _oracle(zone: ZoneInfo, day: date, at: time, max_offset: timedelta) -> datetime:
    """First UTC minute whose local wall time on `day` is >= `at`.

    That is the time itself, the first valid instant after a gap, or the first
    occurrence of a repeated time. No UTC minute before `target - max_offset` can show
    a local time >= target, so the minute-by-minute scan starts just before that.
    """
    target = datetime.combine(day, at)
    u = (target - max_offset - timedelta(minutes=1)).replace(tzinfo=UTC)
    assert u.astimezone(zone).replace(tzinfo=None) < target
    while u.astimezone(zone).replace(tzinfo=None) < target:
        u += timedelta(minutes=1)
    assert u.astimezone(zone).date() == day
    return u


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


ORACLE_CASES = [
    ("Europe/Helsinki", "03:00"),  # gap 03:00-04:00 in March, repeat 03:00-04:00 in October
    ("Europe/Helsinki", "03:30"),
    ("America/New_York", "02:30"),  # gap in March, not repeated in November
    ("America/New_York", "01:30"),  # repeated in November
    ("Australia/Lord_Howe", "02:15"),  # 30-minute gap 02:00-02:30 in October
    ("Australia/Lord_Howe", "01:45"),  # 30-minute repeat 01:30-02:00 in April
    ("Australia/Lord_Howe", "02:00"),  # exactly the start of the gap
    ("Europe/Paris", "02:30"),
    ("Europe/London", "01:00"),
    ("America/Santiago", "00:00"),  # midnight gap in September
    ("America/Santiago", "23:30"),  # repeated 23:00-24:00 in April
    ("Asia/Kolkata", "09:30"),  # no DST
    ("UTC", "03:00"),
]


@pytest.mark.parametrize(("zone_name", "hhmm"), ORACLE_CASES)
def test_daily_fires_match_brute_force_oracle(zone_name: str, hhmm: str) -> None:
    zone = ZoneInfo(zone_name)
    at = time.fromisoformat(hhmm)
    days = list(_days(FIRST_DAY, LAST_DAY))
    after = datetime.combine(FIRST_DAY, time(0), zone) - timedelta(seconds=1)
    fires = fire_times(f"{at.minute} {at.hour} * * *", zone, after, len(days))

    per_day = Counter(fire.date() for fire in fires)
    assert sorted(per_day) == days, "a local day is missing or extra"
    assert set(per_day.values()) == {1}, "a local day fires twice"
    max_offset = _max_offset(zone)
    for day, fire in zip(days, fires, strict=True):
        assert fire.tzinfo is zone
        assert fire.astimezone(UTC) == _oracle(zone, day, at, max_offset), day


# --- readable examples (verified against zoneinfo) ---------------------------------


def _fires_on(cron: str, zone_name: str, day: date) -> list[str]:
    zone = ZoneInfo(zone_name)
    after = datetime.combine(day - timedelta(days=1), time(12), zone)
    return [f.isoformat() for f in fire_times(cron, zone, after, 60) if f.date() == day]


@pytest.mark.parametrize(
    ("cron", "zone_name", "day", "expected"),
    [
        ("0 3 * * *", "Europe/Helsinki", date(2026, 3, 29), ["2026-03-29T04:00:00+03:00"]),
        ("0 3 * * *", "Europe/Helsinki", date(2026, 10, 25), ["2026-10-25T03:00:00+03:00"]),
        ("30 2 * * *", "America/New_York", date(2026, 3, 8), ["2026-03-08T03:00:00-04:00"]),
        ("30 2 * * *", "America/New_York", date(2026, 11, 1), ["2026-11-01T02:30:00-05:00"]),
        ("30 1 * * *", "America/New_York", date(2026, 11, 1), ["2026-11-01T01:30:00-04:00"]),
        ("15 2 * * *", "Australia/Lord_Howe", date(2025, 10, 5), ["2025-10-05T02:30:00+11:00"]),
        ("45 1 * * *", "Australia/Lord_Howe", date(2026, 4, 5), ["2026-04-05T01:45:00+11:00"]),
        ("0 0 * * *", "America/Santiago", date(2025, 9, 7), ["2025-09-07T01:00:00-03:00"]),
        # Non-daily crons on gap days: 02:00 and 02:30 collapse onto the transition.
        (
            "*/30 2-3 * * *",
            "America/New_York",
            date(2026, 3, 8),
            ["2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"],
        ),
        (
            "*/30 2-3 * * *",
            "Europe/Helsinki",
            date(2026, 3, 29),
            ["2026-03-29T02:00:00+02:00", "2026-03-29T02:30:00+02:00", "2026-03-29T04:00:00+03:00"],
        ),
        (
            "*/15 2 * * *",
            "Australia/Lord_Howe",
            date(2025, 10, 5),
            ["2025-10-05T02:30:00+11:00", "2025-10-05T02:45:00+11:00"],
        ),
    ],
)
def test_examples(cron: str, zone_name: str, day: date, expected: list[str]) -> None:
    assert _fires_on(cron, zone_name, day) == expected


def test_helsinki_gap_is_one_am_utc() -> None:
    [fire] = _fires_on("0 3 * * *", "Europe/Helsinki", date(2026, 3, 29))
    assert datetime.fromisoformat(fire).astimezone(UTC) == datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_repeated_hour_fires_only_first_occurrence() -> None:
    fires = _fires_on("* 1 * * *", "America/New_York", date(2026, 11, 1))
    assert len(fires) == 60 and all(f.endswith("-04:00") for f in fires)


@pytest.mark.parametrize("cron", ["*/30 2-3 * * *", "*/10 * * * *", "15,45 0-3 * * 0"])
@pytest.mark.parametrize(
    "zone_name", ["America/New_York", "Australia/Lord_Howe", "America/Santiago", "Europe/Helsinki"]
)
def test_non_daily_cron_is_strictly_increasing(cron: str, zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    fires = fire_times(cron, zone, datetime(2025, 1, 1, tzinfo=UTC), 3000)
    instants = [f.astimezone(UTC) for f in fires]
    assert len(fires) == 3000
    assert all(a < b for a, b in itertools.pairwise(instants))


# --- strictness of `after` ---------------------------------------------------------


def test_after_is_strict_and_any_zone_is_accepted() -> None:
    zone = ZoneInfo("Europe/Helsinki")
    fire = datetime(2026, 3, 29, 1, tzinfo=UTC)  # 04:00+03:00, the gap-shifted 03:00
    assert fire_times("0 3 * * *", zone, fire - timedelta(microseconds=1), 1)[0] == fire
    [next_fire] = fire_times("0 3 * * *", zone, fire, 1)
    assert next_fire.isoformat() == "2026-03-30T03:00:00+03:00"


def test_after_inside_second_occurrence_of_repeated_hour() -> None:
    zone = ZoneInfo("America/New_York")
    second = datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=zone)  # 01:20 EST = 06:20 UTC
    first = datetime(2026, 11, 1, 1, 20, fold=0, tzinfo=zone)  # 01:20 EDT = 05:20 UTC
    assert fire_times("30 1 * * *", zone, second, 1)[0].isoformat() == "2026-11-02T01:30:00-05:00"
    assert fire_times("30 1 * * *", zone, first, 1)[0].isoformat() == "2026-11-01T01:30:00-04:00"


def test_fire_times_edge_arguments() -> None:
    zone = ZoneInfo("UTC")
    assert fire_times("0 3 * * *", zone, datetime(2026, 1, 1, tzinfo=UTC), 0) == []
    with pytest.raises(ValueError, match="timezone-aware"):
        fire_times("0 3 * * *", zone, datetime(2026, 1, 1), 1)


def test_result_does_not_depend_on_host_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    zone = ZoneInfo("Europe/Helsinki")
    after = datetime(2026, 3, 1, tzinfo=UTC)
    expected = [f.isoformat() for f in fire_times("*/30 2-3 * * *", zone, after, 200)]
    monkeypatch.setenv("TZ", "America/New_York")
    time_module.tzset()
    try:
        assert [f.isoformat() for f in fire_times("*/30 2-3 * * *", zone, after, 200)] == expected
    finally:
        monkeypatch.undo()
        time_module.tzset()


# --- upcoming ----------------------------------------------------------------------


def _schedule(zone_name: str, *jobs: tuple[str, str]) -> Schedule:
    return Schedule(ZoneInfo(zone_name), tuple(Job(n, c, f"+{n}") for n, c in jobs))


def test_upcoming_merges_in_time_order_ties_in_file_order() -> None:
    s = _schedule("Europe/Helsinki", ("z_six", "0 6 * * *"), ("b_three", "0 3 * * *"), ("a_six", "0 6 * * *"))
    got = upcoming(s, datetime(2026, 1, 1, tzinfo=UTC), 2)
    assert [(name, fire.isoformat()) for name, fire in got] == [
        ("b_three", "2026-01-01T03:00:00+02:00"),
        ("z_six", "2026-01-01T06:00:00+02:00"),
        ("a_six", "2026-01-01T06:00:00+02:00"),
        ("b_three", "2026-01-02T03:00:00+02:00"),
        ("z_six", "2026-01-02T06:00:00+02:00"),
        ("a_six", "2026-01-02T06:00:00+02:00"),
    ]


def test_upcoming_tie_created_by_a_gap() -> None:
    s = _schedule("Europe/Helsinki", ("later_in_file", "30 3 * * *"), ("three", "0 3 * * *"))
    got = upcoming(s, datetime(2026, 3, 28, 12, tzinfo=UTC), 1)
    assert [(n, f.isoformat()) for n, f in got] == [
        ("later_in_file", "2026-03-29T04:00:00+03:00"),
        ("three", "2026-03-29T04:00:00+03:00"),
    ]


def test_upcoming_job_filter_and_unknown_job() -> None:
    s = _schedule("UTC", ("a", "0 3 * * *"), ("b", "0 6 * * *"))
    got = upcoming(s, datetime(2026, 1, 1, tzinfo=UTC), 3, job="b")
    assert [n for n, _ in got] == ["b", "b", "b"]
    assert [f.hour for _, f in got] == [6, 6, 6]
    with pytest.raises(ConfigError, match=r"unknown job 'c'.*a, b"):
        upcoming(s, datetime(2026, 1, 1, tzinfo=UTC), 1, job="c")
    assert s.job("a").cron == "0 3 * * *"


# --- latest_slot -------------------------------------------------------------------


def test_latest_slot_examples() -> None:
    hel, ny = ZoneInfo("Europe/Helsinki"), ZoneInfo("America/New_York")
    gap_fire = datetime(2026, 3, 29, 1, tzinfo=UTC)
    assert latest_slot("0 3 * * *", hel, gap_fire) == gap_fire
    before = latest_slot("0 3 * * *", hel, gap_fire - timedelta(seconds=1))
    assert before is not None and before.isoformat() == "2026-03-28T03:00:00+02:00"
    # 01:30 EDT is a later wall time than 01:20 EST but an earlier instant.
    fold = latest_slot("30 1 * * *", ny, datetime(2026, 11, 1, 1, 20, fold=1, tzinfo=ny))
    assert fold is not None and fold.isoformat() == "2026-11-01T01:30:00-04:00"


def test_latest_slot_lookback_limit() -> None:
    zone = ZoneInfo("UTC")
    leap = latest_slot("0 0 29 2 *", zone, datetime(2025, 1, 15, tzinfo=UTC))
    assert leap == datetime(2024, 2, 29, tzinfo=UTC)
    assert latest_slot("0 0 29 2 *", zone, datetime(2027, 6, 1, tzinfo=UTC)) is None


def _sample_instants(zone: ZoneInfo) -> list[datetime]:
    """Every 10 minutes within 3 hours of each offset change in 2025, plus a coarse sweep."""
    start = datetime(2025, 1, 1, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in range(24 * 366)]
    offsets = [h.astimezone(zone).utcoffset() for h in hours]
    changes = [hours[i] for i in range(1, len(hours)) if offsets[i] != offsets[i - 1]]
    dense = [c + timedelta(minutes=m) for c in changes for m in range(-180, 181, 10)]
    return dense + [start + timedelta(hours=h, minutes=h % 60) for h in range(0, 24 * 366, 29)]


@pytest.mark.parametrize("zone_name", ["Europe/Helsinki", "Australia/Lord_Howe", "America/Santiago"])
def test_latest_slot_agrees_with_fire_times(zone_name: str) -> None:
    zone = ZoneInfo(zone_name)
    for cron in ("0 3 * * *", "*/30 1-3 * * *", "0 0 * * *", "15 2 * * *", "45 1 * * *"):
        for at in _sample_instants(zone):
            slot = latest_slot(cron, zone, at)
            assert slot is not None and slot <= at
            # Subtract in UTC: aware arithmetic in `zone` is wall-clock arithmetic.
            just_before = slot.astimezone(UTC) - timedelta(seconds=1)
            assert fire_times(cron, zone, just_before, 1)[0].isoformat() == slot.isoformat()
            assert fire_times(cron, zone, slot, 1)[0] > at  # nothing fires in (slot, at]


# --- time zones --------------------------------------------------------------------


def test_load_zone() -> None:
    assert load_zone("Europe/Paris").key == "Europe/Paris"
    with pytest.raises(ConfigError) as info:
        load_zone("Mars/Olympus_Mons")
    assert str(info.value) == "unknown time zone 'Mars/Olympus_Mons'"


@pytest.fixture
def no_host_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(sched, "_ETC_TIMEZONE", tmp_path / "timezone")
    monkeypatch.setattr(sched, "_ETC_LOCALTIME", tmp_path / "localtime")
    monkeypatch.delenv("TZ", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        ("Europe/Paris", "Europe/Paris"),
        (":America/New_York", "America/New_York"),
        (":/usr/share/zoneinfo/Asia/Kolkata", "Asia/Kolkata"),
        ("Not/AZone", "UTC"),
    ],
)
def test_host_timezone_from_tz(no_host_files: Path, monkeypatch: pytest.MonkeyPatch, tz: str, expected: str) -> None:
    monkeypatch.setenv("TZ", tz)
    assert host_timezone_name() == expected


def test_host_timezone_from_files(no_host_files: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert host_timezone_name() == "UTC"
    os.symlink("/usr/share/zoneinfo/Australia/Lord_Howe", no_host_files / "localtime")
    assert host_timezone_name() == "Australia/Lord_Howe"
    (no_host_files / "timezone").write_text("Europe/Helsinki\n")
    assert host_timezone_name() == "Europe/Helsinki"
    monkeypatch.setenv("TZ", "bogus")  # an invalid $TZ falls through to the files
    assert host_timezone_name() == "Europe/Helsinki"


# --- load_schedule -----------------------------------------------------------------

JOBS = '[jobs.a]\ncron = "0 3 * * *"\nselector = "a"\n'


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "orchestrate.toml"
    path.write_text(text)
    return path


def test_project_file_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TZ", "Europe/Helsinki")  # file says "" -> host zone
    s = load_schedule(REPO / "orchestrate.toml")
    assert s.timezone.key == "Europe/Helsinki"
    assert s.jobs == (
        Job("agg_messageCenter_full", "0 3 * * *", "agg_messageCenter_full"),
        Job("agg_nmspropositionrcp_full", "0 6 * * *", "agg_nmspropositionrcp_full"),
    )


def test_timezone_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, 'timezone = "Europe/Paris"\n' + JOBS)
    assert load_schedule(path).timezone.key == "Europe/Paris"
    monkeypatch.setenv(sched.ENV_TIMEZONE, "")  # empty counts as unset
    assert load_schedule(path).timezone.key == "Europe/Paris"
    monkeypatch.setenv(sched.ENV_TIMEZONE, "Asia/Kolkata")
    assert load_schedule(path).timezone.key == "Asia/Kolkata"
    assert load_schedule(path, "America/New_York").timezone.key == "America/New_York"


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('timezone = "', ["malformed TOML"]),
        ('timezone = ""\n', ["no jobs defined"]),
        ("jobs = 3\n", ["jobs must be a table", "3"]),
        ('[jobs.a]\nselector = "a"\n', ["[jobs.a]", "missing key 'cron'"]),
        ('[jobs.a]\ncron = "0 3 * * *"\n', ["[jobs.a]", "missing key 'selector'"]),
        ('[jobs.a]\ncron = ""\nselector = "a"\n', ["cron must be a non-empty string"]),
        ('[jobs.a]\ncron = "0 0 3 * * *"\nselector = "a"\n', ["'0 0 3 * * *'", "5 fields"]),
        ('[jobs.a]\ncron = "@daily"\nselector = "a"\n', ["'@daily'", "5 fields"]),
        ('[jobs.a]\ncron = "61 3 * * *"\nselector = "a"\n', ["'61 3 * * *'", "croniter"]),
        ('[jobs.a]\ncron = "0 0 31 2 *"\nselector = "a"\n', ["'0 0 31 2 *'", "never fires"]),
        ('timezone = "Mars/Base"\n' + JOBS, ["timezone", "unknown time zone 'Mars/Base'"]),
        ("timezone = 5\n" + JOBS, ["timezone must be a string", "5"]),
        ("retries = 3\n" + JOBS, ["unknown key 'retries'"]),
        (JOBS + "retries = 3\n", ["[jobs.a]", "unknown key 'retries'"]),
    ],
)
def test_load_schedule_errors(tmp_path: Path, text: str, needles: list[str]) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_schedule(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    for needle in needles:
        assert needle in message


def test_scheduler_settings_defaults_and_values(tmp_path: Path) -> None:
    assert load_schedule(_write(tmp_path, JOBS)).settings == sched.SchedulerSettings()
    path = _write(
        tmp_path,
        JOBS + "[scheduler]\nretries = 0\nbackoff_seconds = 1.5\ntimeout_seconds = 60\n"
        'on_failure = "notify-ops"\non_failure_url = "https://hooks.example/x"\n',
    )
    assert load_schedule(path).settings == sched.SchedulerSettings(
        retries=0,
        backoff_seconds=1.5,
        timeout_seconds=60.0,
        on_failure="notify-ops",
        on_failure_url="https://hooks.example/x",
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("scheduler = 3\n", "[scheduler]: must be a table, got 3"),
        (
            "[scheduler]\nretry = 3\n",
            "[scheduler]: unknown key 'retry' (allowed: retries, backoff_seconds, "
            "timeout_seconds, on_failure, on_failure_url)",
        ),
        ("[scheduler]\nretries = -1\n", "retries must be a whole number >= 0, got -1"),
        ("[scheduler]\nretries = 1.5\n", "retries must be a whole number >= 0, got 1.5"),
        ("[scheduler]\nretries = true\n", "retries must be a whole number >= 0, got True"),
        ("[scheduler]\nbackoff_seconds = -1\n", "backoff_seconds must be a number >= 0, got -1"),
        ('[scheduler]\nbackoff_seconds = "30"\n', "backoff_seconds must be a number >= 0, got '30'"),
        ("[scheduler]\ntimeout_seconds = 0\n", "timeout_seconds must be a number >= 1, got 0"),
        ("[scheduler]\ntimeout_seconds = inf\n", "timeout_seconds must be a number >= 1, got inf"),
        ("[scheduler]\non_failure = 1\n", "on_failure must be a string, got 1"),
        ('[scheduler]\non_failure_url = "hooks.example"\n', "on_failure_url must start with http:// or https://"),
    ],
)
def test_scheduler_settings_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = _write(tmp_path, text + JOBS)
    with pytest.raises(ConfigError) as info:
        load_schedule(path)
    assert str(info.value).startswith(f"{path}: ")
    assert needle in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml: file not found"):
        load_schedule(tmp_path / "nope.toml")


def test_bad_override_names_its_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(tmp_path, JOBS)
    with pytest.raises(ConfigError, match="timezone override: unknown time zone 'Nowhere'"):
        load_schedule(path, "Nowhere")
    monkeypatch.setenv(sched.ENV_TIMEZONE, "Atlantis")
    with pytest.raises(ConfigError, match="CAMPAIGN_CUBES_TIMEZONE: unknown time zone 'Atlantis'"):
        load_schedule(path)


def test_every_project_job_names_a_selector_of_selectors_yml() -> None:
    import yaml  # comes with dbt

    selectors = {entry["name"]: entry for entry in yaml.safe_load((REPO / "selectors.yml").read_text())["selectors"]}
    for job in load_schedule(REPO / "orchestrate.toml").jobs:
        assert job.selector in selectors, f"{job.name}: selector {job.selector!r} is not in selectors.yml"
        # the nightly exclusions live in the selector (jobs.build_args adds none)
        exclusions = next(
            part["exclude"] for part in selectors[job.selector]["definition"]["union"] if "exclude" in part
        )
        assert {"method": "test_type", "value": "unit"} in exclusions
        assert {"method": "tag", "value": "audited"} in exclusions


def test_vars_table_gives_the_dbt_vars(tmp_path: Path) -> None:
    path = _write(tmp_path, '[vars]\ncampaign_schema = "public"\nreporting_timezone = "Europe/Paris"\n' + JOBS)
    assert load_schedule(path).dbt_vars == {"campaign_schema": "public", "reporting_timezone": "Europe/Paris"}
    assert load_schedule(_write(tmp_path, JOBS)).dbt_vars == {}
    with pytest.raises(ConfigError, match="vars must be a table"):
        load_schedule(_write(tmp_path, 'vars = "campaign_schema: public"\n' + JOBS))

"""The timetable: orchestrate.toml's jobs and settings, and their DST-aware fire times.

Cron expressions are evaluated on the local wall clock of one IANA zone, day by day.
croniter only ever sees naive local datetimes (given aware ones it shifts or doubles
runs across DST); each naive local time is then mapped to exactly one instant:

* a time that exists once is that instant;
* a time skipped by a spring-forward gap is the first valid instant after the gap,
  i.e. the transition instant itself;
* a time repeated by a fall-back fold is its first occurrence (fold=0);
* naive times that map to the same instant fire once.

So a daily job fires exactly once per local calendar day in every zone.

The same file's [scheduler] table (SchedulerSettings) says how runs are retried,
bounded and reported; unknown keys are configuration errors, as everywhere here.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

__all__ = [
    "ConfigError",
    "Job",
    "Schedule",
    "SchedulerSettings",
    "fire_times",
    "host_timezone_name",
    "latest_slot",
    "load_schedule",
    "load_zone",
    "upcoming",
]

ENV_TIMEZONE = "CAMPAIGN_CUBES_TIMEZONE"
_ETC_TIMEZONE = Path("/etc/timezone")  # module-level so tests can point them elsewhere
_ETC_LOCALTIME = Path("/etc/localtime")
_TOP_KEYS = ("timezone", "vars", "jobs", "scheduler")
_JOB_KEYS = ("cron", "selector")
_OPTIONAL_JOB_KEYS = ("stale_after",)
# A job's freshness gate (dbt var stale_source_after, macros/source_freshness.sql):
# off, source (the fact tables' freshness error_after) or a duration.
STALE_DURATION = re.compile(r"([0-9]+(?:\.[0-9]+)?) *(minutes?|min|hours?|h|days?|d)", re.I)
_SCHEDULER_KEYS = ("retries", "backoff_seconds", "timeout_seconds", "on_failure", "on_failure_url")
# Margin for the naive croniter walk: a fold makes a later naive time an earlier
# instant, so we start a day early and filter on instants instead.
_MARGIN = timedelta(days=1)
_LOOKBACK = timedelta(days=400)
# A job's name becomes a folder (target/jobs/<name>) and a lock name: a plain
# identifier, so that no name can reach outside target/jobs.
JOB_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,62}")


class ConfigError(Exception):
    """A configuration problem; the message is shown to users as-is."""


@dataclass(frozen=True)
class Job:
    name: str  # e.g. "agg_messageCenter_full"
    cron: str  # 5-field cron expression, local wall-clock time
    selector: str  # a selector of selectors.yml: what `dbt build --selector` runs
    # Refuse to publish facts older than this (off, source or e.g. "36 hours"); the
    # default is the sources' freshness error_after.
    stale_after: str = "source"


@dataclass(frozen=True)
class SchedulerSettings:
    """How runs are retried, bounded and reported ([scheduler] in orchestrate.toml)."""

    retries: int = 2  # extra attempts after a transient failure (0: none)
    backoff_seconds: float = 30.0  # wait before the first retry; doubles for each next one
    timeout_seconds: float = 3 * 3600.0  # whole run, retries and waits included
    on_failure: str = ""  # shell command run after a failed run, with CUBES_* variables
    on_failure_url: str = ""  # http(s) URL that receives a JSON POST after a failed run


@dataclass(frozen=True)
class Schedule:
    timezone: ZoneInfo
    jobs: tuple[Job, ...]  # in file order
    settings: SchedulerSettings = SchedulerSettings()
    # [vars]: the dbt vars every command runs with (--vars overrides them one by one)
    dbt_vars: dict[str, Any] = field(default_factory=dict)

    def job(self, name: str) -> Job:
        """Return the job called `name`; ConfigError listing the known names otherwise."""
        for job in self.jobs:
            if job.name == name:
                return job
        known = ", ".join(job.name for job in self.jobs)
        raise ConfigError(f"unknown job {name!r} (known jobs: {known})")


# --- time zones -------------------------------------------------------------------


def load_zone(name: str) -> ZoneInfo:
    """Load an IANA zone; ConfigError "unknown time zone 'X'" if it is not one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # ValueError covers empty names, absolute paths and non-TZif files.
        raise ConfigError(f"unknown time zone {name!r}") from None


def _valid_zone_name(name: str) -> bool:
    try:
        load_zone(name)
    except ConfigError:
        return False
    return True


def _after_zoneinfo(path: str) -> str:
    """'/usr/share/zoneinfo/Europe/Paris' -> 'Europe/Paris'; other strings unchanged."""
    return path.rpartition("zoneinfo/")[2]


def _read_etc_timezone() -> str | None:
    try:
        words = _ETC_TIMEZONE.read_text(encoding="utf-8").split()
    except (OSError, UnicodeDecodeError):
        return None
    return words[0] if words else None


def _read_localtime_link() -> str | None:
    try:
        target = os.readlink(_ETC_LOCALTIME)
    except OSError:  # missing, or a plain copy of a TZif file: the name is lost
        return None
    return _after_zoneinfo(target) if "zoneinfo/" in target else None


def host_timezone_name() -> str:
    """IANA name of the host zone: $TZ, /etc/timezone, the /etc/localtime link, else "UTC"."""
    # $TZ may be ":Europe/Paris" or a path under a zoneinfo directory.
    tz_env = _after_zoneinfo(os.environ.get("TZ", "").lstrip(":"))
    candidates = (tz_env, _read_etc_timezone(), _read_localtime_link())
    return next((name for name in candidates if name and _valid_zone_name(name)), "UTC")


# --- configuration ------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: malformed TOML: {exc}") from None


def _reject_unknown(table: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in table:
        if key not in allowed:
            raise ConfigError(f"{where}: unknown key {key!r} (allowed: {', '.join(allowed)})")


def _cron_problem(cron: str) -> str | None:
    """Why `cron` is unusable, or None. croniter alone would also accept 6/7 fields."""
    fields = len(cron.split())
    if fields != 5:
        return f"must have 5 fields (minute hour day month weekday), got {fields}"
    try:
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        return "never fires"
    except (ValueError, TypeError) as exc:  # croniter's parse errors subclass these
        return f"rejected by croniter: {exc}"
    return None


def _parse_job(path: Path, name: str, spec: Any) -> Job:
    where = f"{path}: [jobs.{name}]"
    if not JOB_NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: job name {name!r} must be a letter then letters, digits or _ "
            "(at most 63), as it names a folder under target/jobs"
        )
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: must be a table with cron and selector, got {spec!r}")
    _reject_unknown(spec, _JOB_KEYS + _OPTIONAL_JOB_KEYS, where)
    for key in _JOB_KEYS:
        if key not in spec:
            raise ConfigError(f"{where}: missing key {key!r}")
        if not isinstance(spec[key], str) or not spec[key].strip():
            raise ConfigError(f"{where}: {key} must be a non-empty string, got {spec[key]!r}")
    problem = _cron_problem(spec["cron"])
    if problem:
        raise ConfigError(f"{where}: cron {spec['cron']!r} {problem}")
    stale_after = spec.get("stale_after", "source")
    if not isinstance(stale_after, str) or not _stale_after_ok(stale_after):
        raise ConfigError(
            f"{where}: stale_after is {stale_after!r}; expected off, source (the sources' freshness "
            "error_after) or a duration such as 36 hours (minutes, hours or days, more than 0)"
        )
    return Job(name=name, cron=spec["cron"], selector=spec["selector"], stale_after=stale_after.strip())


def _stale_after_ok(value: str) -> bool:
    return value.strip().lower() in ("off", "source") or bool(stale_after_seconds(value))


def stale_after_seconds(value: str) -> float | None:
    """A stale_after duration ("36 hours", "90 min", "3 days") in seconds; None for anything else."""
    found = STALE_DURATION.fullmatch(value.strip())
    if found is None:
        return None
    return float(found.group(1)) * {"m": 60, "h": 3600, "d": 86400}[found.group(2)[0].lower()]


def _number(where: str, key: str, value: Any, minimum: float, whole: bool = False) -> float:
    # bool is an int in Python; `retries = true` is a mistake, not 1.
    usable = (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (isinstance(value, int) or not whole)
        and math.isfinite(value)
        and value >= minimum
    )
    if not usable:
        kind = "a whole number" if whole else "a number"
        raise ConfigError(f"{where}: {key} must be {kind} >= {minimum:g}, got {value!r}")
    return float(value)


def url_problem(url: str) -> str | None:
    """Why `url` cannot receive the failure POST, or None.

    Any http(s) URL with a host is taken, loopback and private addresses included:
    the operator chose it, and a local relay is a common set-up.
    """
    if url != url.strip() or any(ord(char) < 33 or ord(char) == 127 for char in url):
        return "must not contain spaces or control characters"
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        return f"does not parse ({exc})"
    if parts.scheme not in ("http", "https"):
        return "must start with http:// or https://"
    if not parts.hostname:
        return "must name a host (http://host[:port]/path)"
    return None


def _parse_settings(path: Path, table: Any) -> SchedulerSettings:
    where = f"{path}: [scheduler]"
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: must be a table, got {table!r}")
    _reject_unknown(table, _SCHEDULER_KEYS, where)
    defaults = SchedulerSettings()
    for key in ("on_failure", "on_failure_url"):
        if not isinstance(table.get(key, ""), str):
            raise ConfigError(f"{where}: {key} must be a string, got {table[key]!r}")
    url = table.get("on_failure_url", "")
    problem = url_problem(url) if url else None
    if problem:
        raise ConfigError(f"{where}: on_failure_url {problem}, got {url!r}")
    timeout = _number(where, "timeout_seconds", table.get("timeout_seconds", defaults.timeout_seconds), 1)
    return SchedulerSettings(
        retries=int(_number(where, "retries", table.get("retries", defaults.retries), 0, whole=True)),
        backoff_seconds=float(
            _number(where, "backoff_seconds", table.get("backoff_seconds", defaults.backoff_seconds), 0)
        ),
        timeout_seconds=float(timeout),
        on_failure=table.get("on_failure", ""),
        on_failure_url=url,
    )


def _zone_from(value: str, source: str) -> ZoneInfo:
    try:
        return load_zone(value)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_schedule(path: Path, timezone_override: str | None = None) -> Schedule:
    """Read the TOML schedule. Zone precedence: argument, $CAMPAIGN_CUBES_TIMEZONE, file, host.

    Empty strings count as "not set" at every level.
    """
    data = _read_toml(path)
    _reject_unknown(data, _TOP_KEYS, str(path))
    file_zone = data.get("timezone", "")
    if not isinstance(file_zone, str):
        raise ConfigError(f"{path}: timezone must be a string, got {file_zone!r}")
    jobs = data.get("jobs")
    if not jobs:
        raise ConfigError(f"{path}: no jobs defined (add [jobs.<name>] tables with cron and selector)")
    if not isinstance(jobs, dict):
        raise ConfigError(f"{path}: jobs must be a table of [jobs.<name>] tables, got {jobs!r}")
    parsed = tuple(_parse_job(path, name, spec) for name, spec in jobs.items())
    settings = _parse_settings(path, data.get("scheduler", {}))
    dbt_vars = data.get("vars", {})
    if not isinstance(dbt_vars, dict):
        raise ConfigError(
            f"{path}: vars must be a table of dbt vars ([vars] with name = value lines), got {dbt_vars!r}"
        )
    # The file's zone is validated even when overridden: same verdict on every host.
    file_zone_info = _zone_from(file_zone, f"{path}: timezone") if file_zone else None
    for value, source in (
        (timezone_override, "timezone override"),
        (os.environ.get(ENV_TIMEZONE), f"environment variable {ENV_TIMEZONE}"),
    ):
        if value:
            return Schedule(timezone=_zone_from(value, source), jobs=parsed, settings=settings, dbt_vars=dbt_vars)
    zone = file_zone_info or load_zone(host_timezone_name())
    return Schedule(timezone=zone, jobs=parsed, settings=settings, dbt_vars=dbt_vars)


# --- fire times -------------------------------------------------------------------


def _wall(epoch: int, zone: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(epoch, zone).replace(tzinfo=None)


def _to_instant(naive: datetime, zone: ZoneInfo) -> datetime:
    """Map a naive local time to its policy instant, as an aware UTC datetime."""
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if first.astimezone(zone).replace(tzinfo=None) == naive:
        return first  # exists once, or first occurrence of a repeated time
    # In a gap fold=0 and fold=1 use the offsets from either side of the transition,
    # so their UTC readings bracket it: bisect to the first second whose wall time
    # is >= naive, which is the transition instant.
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    lo, hi = sorted((int(first.timestamp()), int(second.timestamp())))
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(mid, zone) >= naive:
            hi = mid
        else:
            lo = mid
    return datetime.fromtimestamp(hi, UTC)


def _walk(cron: str, start: datetime, backward: bool = False) -> Iterator[datetime]:
    """Naive cron matches strictly after (or before) the naive `start`."""
    it = croniter(cron, start)
    while True:
        try:
            yield it.get_prev(datetime) if backward else it.get_next(datetime)
        except CroniterBadDateError:  # no further match at all
            return


def _utc(moment: datetime, name: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")
    # Compare in UTC: aware datetimes sharing a tzinfo compare by wall time, ignoring fold.
    return moment.astimezone(UTC)


def fire_times(cron: str, zone: ZoneInfo, after: datetime, count: int) -> list[datetime]:
    """The next `count` fire instants strictly after `after`, ascending, in `zone`."""
    after_utc = _utc(after, "after")
    start = after_utc.astimezone(zone).replace(tzinfo=None) - _MARGIN
    fires: list[datetime] = []
    if count <= 0:
        return fires
    for naive in _walk(cron, start):
        instant = _to_instant(naive, zone)
        # The mapping is monotonic, so "> last" drops the duplicates a gap produces.
        if instant > after_utc and (not fires or instant > fires[-1]):
            fires.append(instant)
            if len(fires) == count:
                break
    return [instant.astimezone(zone) for instant in fires]


def upcoming(schedule: Schedule, after: datetime, count: int, job: str | None = None) -> list[tuple[str, datetime]]:
    """`count` fires per job (or for `job` only), merged by time; ties in file order."""
    wanted = {schedule.job(job).name} if job is not None else None
    merged: list[tuple[datetime, int, str, datetime]] = []
    for index, each in enumerate(schedule.jobs):
        if wanted is None or each.name in wanted:
            for fire in fire_times(each.cron, schedule.timezone, after, count):
                merged.append((fire.astimezone(UTC), index, each.name, fire))
    merged.sort(key=lambda item: (item[0], item[1]))
    return [(name, fire) for _, _, name, fire in merged]


def latest_slot(cron: str, zone: ZoneInfo, at: datetime) -> datetime | None:
    """The most recent fire instant <= `at`, or None if none in the last 400 days."""
    at_utc = _utc(at, "at")
    start = at_utc.astimezone(zone).replace(tzinfo=None) + _MARGIN
    for naive in _walk(cron, start, backward=True):
        instant = _to_instant(naive, zone)
        if instant <= at_utc:  # the first one walking back is the latest (monotonic map)
            return instant.astimezone(zone) if at_utc - instant <= _LOOKBACK else None
    return None

"""An independent implementation of both aggregates, in plain Python.

Written from the contract (docs/contract.md), sharing no SQL with the dbt models: it reads
the raw Campaign tables row by row and computes each published row itself, so that
a test can compare the two cell by cell.
"""

from __future__ import annotations

import csv
import math
import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import RealDictCursor

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
Row = dict[str, Any]


@dataclass(frozen=True)
class Unusable:
    """A timestamp Python cannot hold ('infinity', a year before 1 or after 9999).

    The contract counts such a row with no date and no duration; `order` keeps its
    place in PostgreSQL's sort (seconds since 1970, roughly; +-inf for infinities).
    """

    text: str
    order: float


_YEAR = re.compile(r"^(\d+)-")


def _unusable(text: str) -> Unusable:
    if text in ("infinity", "-infinity"):
        return Unusable(text, math.inf if text == "infinity" else -math.inf)
    match = _YEAR.match(text)
    year = int(match.group(1)) if match else 0
    year = -year if text.endswith(" BC") else year
    return Unusable(text, (year - 1970) * 365.2425 * 86400)


def _timestamp_caster(default: Any) -> Callable[[str | bytes | None, Any], Any]:
    # psycopg2 reads '-infinity' as datetime.min (year 1) and fails on year 294276:
    # the raw text decides first
    def cast(raw: str | bytes | None, cursor: Any) -> Any:
        if raw is None:
            return None
        value = raw.decode() if isinstance(raw, bytes) else raw
        if value in ("infinity", "-infinity") or value.endswith(" BC") or not re.match(r"^\d{4}-", value):
            return _unusable(value)
        return default(value, cursor)

    return cast


_TIMESTAMPTZ = psycopg2.extensions.new_type(
    (1184,), "REFERENCE_TIMESTAMPTZ", _timestamp_caster(psycopg2.extensions.PYDATETIMETZ)
)
_TIMESTAMP = psycopg2.extensions.new_type(
    (1114,), "REFERENCE_TIMESTAMP", _timestamp_caster(psycopg2.extensions.PYDATETIME)
)


def fetch(connection: Any, schema: str, table: str) -> list[Row]:
    with connection.cursor(cursor_factory=RealDictCursor) as cursor:
        # instants read in UTC, so that the supported range is judged as the models judge it
        cursor.execute("select current_setting('TimeZone')")
        session_zone = next(iter(cursor.fetchone().values()))
        cursor.execute("select set_config('TimeZone', 'UTC', false)")
        psycopg2.extensions.register_type(_TIMESTAMPTZ, cursor)
        psycopg2.extensions.register_type(_TIMESTAMP, cursor)
        try:
            cursor.execute(sql.SQL("select * from {}").format(sql.Identifier(schema, table)))
            return [dict(row) for row in cursor.fetchall()]
        finally:
            cursor.execute("select set_config('TimeZone', %s, false)", (session_zone,))


def seed(name: str) -> dict[int, Row]:
    with (SEEDS / f"{name}.csv").open() as handle:
        return {int(row[next(iter(row))]): row for row in csv.DictReader(handle)}


def _desc_nulls_last(value: Any) -> tuple[bool, Any]:
    """Sort key for 'descending, NULLs last' under an ascending sort of negated values."""
    return (value is None, _negate(value) if value is not None else 0)


def _asc_nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def _negate(value: Any) -> Any:
    if isinstance(value, Unusable):
        return -value.order
    if isinstance(value, datetime):
        # a wall-clock time (timestamp without time zone) sorts as written
        return -(value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    return -value


def dedupe(rows: Iterable[Row], key: str, preference: Callable[[Row], tuple[Any, ...]]) -> list[Row]:
    """Drop the placeholder (key 0); keep one row per key, the first by `preference`."""
    kept: dict[Any, Row] = {}
    nameless: list[Row] = []
    for row in rows:
        if row[key] == 0:
            continue
        if row[key] is None:
            nameless.append(row)
        elif row[key] not in kept or preference(row) < preference(kept[row[key]]):
            kept[row[key]] = row
    return [*kept.values(), *nameless]


def instant(moment: datetime | Unusable | None, storage_zone: ZoneInfo | None) -> datetime | Unusable | None:
    """A Campaign timestamp as an instant: a wall-clock time is read in Campaign's storage zone.

    Where a DST change makes the wall time ambiguous or skips it, PostgreSQL reads
    it with the smaller of the two offsets (standard time): the later instant of a
    repeated hour, the offset before the change in a spring gap.
    """
    if not isinstance(moment, datetime) or moment.tzinfo is not None:
        return moment
    if storage_zone is None:
        raise ValueError("a timestamp without time zone needs Campaign's storage zone")
    candidates = [moment.replace(tzinfo=storage_zone, fold=fold) for fold in (0, 1)]
    chosen = min(candidates, key=lambda candidate: candidate.utcoffset() or timedelta(0))
    try:
        return chosen.astimezone(UTC)
    except OverflowError:  # before year 1 or after 9999 in UTC
        return Unusable(moment.isoformat(), -math.inf if moment.year == 1 else math.inf)


def local_date(moment: datetime | Unusable | None, zone: ZoneInfo) -> date | None:
    """The day in the reporting zone; none for NULL, infinite or out-of-range (year 1 - 9999) values."""
    if not isinstance(moment, datetime):
        return None
    try:
        return moment.astimezone(zone).date()
    except OverflowError:  # the day falls before 0001-01-01 or after 9999-12-31
        return None


def usable_weight(weight: float | None) -> float | None:
    """The weights that total_weight adds up: finite, below 1e300 in magnitude."""
    return weight if weight is not None and abs(weight) < 1e300 else None


def levels(day: date | None) -> tuple[Any, Any, Any, Any]:
    if day is None:
        return (None, None, None, None)
    week = day - timedelta(days=day.weekday())
    return (week, day.replace(day=1), date(day.year, 1 if day.month <= 6 else 7, 1), day.year)


def code_label(code: int, labels: dict[int, Row], column: str) -> str:
    if code == -1:
        return "unknown"
    if code not in labels:
        return f"unknown ({code})"
    return str(labels[code][column])


def link_label(link: int, found: dict[int, Row], column: str, none_label: str) -> Any:
    if link == 0:
        return none_label
    if link not in found:
        return f"unknown ({link})"
    return found[link][column]


def propositions_cube(
    connection: Any, schema: str, zone_name: str, storage_zone: str | None = None
) -> dict[tuple[Any, ...], Row]:
    zone = ZoneInfo(zone_name)
    storage = ZoneInfo(storage_zone) if storage_zone else None
    tie = lambda *columns: lambda row: tuple(_asc_nulls_last(row.get(c)) for c in columns)  # noqa: E731
    latest = lambda *columns: lambda row: tuple(_desc_nulls_last(row.get(c)) for c in columns)  # noqa: E731
    facts = dedupe(
        fetch(connection, schema, "nmspropositionrcp"), "ipropositionid", latest("tslastmodified", "istatus", "tsevent")
    )
    offers = {
        r["iofferid"]: r
        for r in dedupe(
            fetch(connection, schema, "nmsoffer"),
            "iofferid",
            lambda r: (*latest("tslastmodified")(r), *tie("slabel", "sname")(r)),
        )
    }
    spaces = {
        r["iofferspaceid"]: r
        for r in dedupe(
            fetch(connection, schema, "nmsofferspace"),
            "iofferspaceid",
            lambda r: (*latest("tslastmodified")(r), *tie("ichannel", "slabel")(r)),
        )
    }
    deliveries = {
        r["ideliveryid"]: r
        for r in dedupe(
            fetch(connection, schema, "nmsdelivery"),
            "ideliveryid",
            lambda r: (*latest("tslastmodified")(r), *tie("imessagetype", "slabel")(r)),
        )
    }
    channels = seed("campaign_channels")

    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in facts:
        delivery_id = row["ideliveryid"] or 0
        space = spaces.get(row["iofferspaceid"])
        channel = space["ichannel"] if space is not None else None
        if channel is None and delivery_id in deliveries:
            channel = deliveries[delivery_id]["imessagetype"]
        day = local_date(instant(row["tsevent"], storage), zone)
        key = (day, -1 if channel is None else channel, delivery_id, row["iofferid"] or 0)
        groups[key].append(row)

    cube: dict[tuple[Any, ...], Row] = {}
    for (day, channel, delivery_id, offer_id), rows in groups.items():
        statuses = [r["istatus"] for r in rows]
        presented, accepted, rejected = statuses.count(1), statuses.count(3), statuses.count(5)
        weights = [w for w in (usable_weight(r["dweight"]) for r in rows) if w is not None]
        week, month, semester, year = levels(day)
        cube[(day, channel, delivery_id, offer_id)] = {
            "proposition_week": week,
            "proposition_month": month,
            "proposition_semester": semester,
            "proposition_year": year,
            "channel_label": code_label(channel, channels, "channel_label"),
            "delivery_label": link_label(delivery_id, deliveries, "slabel", "no delivery"),
            "offer_name": link_label(offer_id, offers, "sname", "no offer"),
            "offer_label": link_label(offer_id, offers, "slabel", "no offer"),
            "propositions": len(rows),
            "presented": presented,
            "accepted": accepted,
            "rejected": rejected,
            "control_group": statuses.count(99),
            "acceptance_rate": (
                Decimal(accepted) / Decimal(presented + accepted + rejected)
                if presented + accepted + rejected
                else None
            ),
            "recipients": len({r["irecipientid"] for r in rows if r["irecipientid"] not in (None, 0)}),
            "total_weight": sum(weights) if weights else None,
        }
    return cube


EVENT_TABLES = {
    "eventhisto": (("nmseventhisto", "bieventhistoid"),),
    "execution": (("nmsrtevent", "irteventid"), ("nmsbatchevent", "ibatcheventid")),
}


def message_center_cube(
    connection: Any, schema: str, zone_name: str, mode: str, storage_zone: str | None = None
) -> dict[tuple[Any, ...], Row]:
    zone = ZoneInfo(zone_name)
    storage = ZoneInfo(storage_zone) if storage_zone else None
    statuses = seed("campaign_event_statuses")
    channels = seed("campaign_channels")
    preference = lambda r: tuple(_desc_nulls_last(r.get(c)) for c in ("tslastmodified", "istatus", "tscreated"))  # noqa: E731
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for table, key in EVENT_TABLES[mode]:
        for row in dedupe(fetch(connection, schema, table), key, preference):
            event_type = (row["stype"] or "").strip(" \t\r\n") or "(none)"
            channel = -1 if row["iwishedchannel"] is None else row["iwishedchannel"]
            status = -1 if row["istatus"] is None else row["istatus"]
            row["created"], row["processed"] = instant(row["tscreated"], storage), instant(row["tsprocessed"], storage)
            groups[(local_date(row["created"], zone), channel, status, event_type)].append(row)

    cube: dict[tuple[Any, ...], Row] = {}
    for (day, channel, status, event_type), rows in groups.items():
        # only instants Python holds (year 1 - 9999 in UTC) have a duration
        durations = [
            (r["processed"] - r["created"]).total_seconds()
            for r in rows
            if isinstance(r["processed"], datetime) and isinstance(r["created"], datetime)
        ]
        week, month, semester, year = levels(day)
        cube[(day, channel, status, event_type)] = {
            "event_week": week,
            "event_month": month,
            "event_semester": semester,
            "event_year": year,
            "channel_label": code_label(channel, channels, "channel_label"),
            "status_name": code_label(status, statuses, "status_name"),
            "status_label": code_label(status, statuses, "status_label"),
            "events": len(rows),
            "processed_events": sum(1 for r in rows if r["tsprocessed"] is not None),
            "avg_processing_seconds": sum(durations) / len(durations) if durations else None,
            "max_processing_seconds": max(durations) if durations else None,
        }
    return cube


def published(connection: Any, schema: str, table: str, grain: tuple[str, ...]) -> dict[tuple[Any, ...], Row]:
    rows = fetch(connection, schema, table)
    return {tuple(row.pop(column) for column in grain): row for row in rows}


def differences(expected: dict[tuple[Any, ...], Row], actual: dict[tuple[Any, ...], Row]) -> list[str]:
    """Every cell that differs, worded for a failing assertion (empty when equal)."""
    problems = [f"missing group {key}" for key in expected.keys() - actual.keys()]
    problems += [f"unexpected group {key}" for key in actual.keys() - expected.keys()]
    for key in expected.keys() & actual.keys():
        for column, want in expected[key].items():
            got = actual[key].get(column)
            if not _same(want, got):
                problems.append(f"{key} {column}: expected {want!r}, published {got!r}")
    return problems


def _same(want: Any, got: Any) -> bool:
    if want is None or got is None:
        return want is None and got is None
    if isinstance(want, Decimal) or isinstance(got, Decimal):
        # numeric division stops at 20 digits in PostgreSQL, at 28 in Python
        return abs(Decimal(want) - Decimal(got)) <= Decimal("1e-15")
    if isinstance(want, float) or isinstance(got, float):
        return abs(float(want) - float(got)) <= 1e-6 * max(1.0, abs(float(want)))
    return bool(want == got)

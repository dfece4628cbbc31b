"""An independent implementation of both aggregates, in plain Python.

Written from shared/campaign-model.md, sharing no SQL with the dbt models: it reads
the raw Campaign tables row by row and computes each published row itself, so that
a test can compare the two cell by cell.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from psycopg2 import sql
from psycopg2.extras import RealDictCursor

SEEDS = Path(__file__).resolve().parents[2] / "seeds"
Row = dict[str, Any]


def fetch(connection: Any, schema: str, table: str) -> list[Row]:
    with connection.cursor(cursor_factory=RealDictCursor) as cursor:
        cursor.execute(sql.SQL("select * from {}").format(sql.Identifier(schema, table)))
        return [dict(row) for row in cursor.fetchall()]


def seed(name: str) -> dict[int, Row]:
    with (SEEDS / f"{name}.csv").open() as handle:
        return {int(row[next(iter(row))]): row for row in csv.DictReader(handle)}


def _desc_nulls_last(value: Any) -> tuple[bool, Any]:
    """Sort key for 'descending, NULLs last' under an ascending sort of negated values."""
    return (value is None, _negate(value) if value is not None else 0)


def _asc_nulls_last(value: Any) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def _negate(value: Any) -> Any:
    if isinstance(value, datetime):
        return -value.timestamp()
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


def local_date(moment: datetime | None, zone: ZoneInfo) -> date | None:
    return moment.astimezone(zone).date() if moment is not None else None


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


def propositions_cube(connection: Any, schema: str, zone_name: str) -> dict[tuple[Any, ...], Row]:
    zone = ZoneInfo(zone_name)
    tie = lambda *columns: (lambda row: tuple(_asc_nulls_last(row.get(c)) for c in columns))  # noqa: E731
    latest = lambda *columns: (lambda row: tuple(_desc_nulls_last(row.get(c)) for c in columns))  # noqa: E731
    facts = dedupe(fetch(connection, schema, "nmspropositionrcp"), "ipropositionid",
                   latest("tslastmodified", "istatus", "tsevent"))
    offers = {r["iofferid"]: r for r in dedupe(fetch(connection, schema, "nmsoffer"), "iofferid",
                                               lambda r: (*latest("tslastmodified")(r), *tie("slabel", "sname")(r)))}
    spaces = {r["iofferspaceid"]: r for r in dedupe(fetch(connection, schema, "nmsofferspace"), "iofferspaceid",
                                                    lambda r: (*latest("tslastmodified")(r), *tie("ichannel", "slabel")(r)))}
    deliveries = {r["ideliveryid"]: r for r in dedupe(fetch(connection, schema, "nmsdelivery"), "ideliveryid",
                                                      lambda r: (*latest("tslastmodified")(r), *tie("imessagetype", "slabel")(r)))}
    channels = seed("campaign_channels")

    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for row in facts:
        delivery_id = row["ideliveryid"] or 0
        space = spaces.get(row["iofferspaceid"])
        channel = space["ichannel"] if space is not None else None
        if channel is None and delivery_id in deliveries:
            channel = deliveries[delivery_id]["imessagetype"]
        key = (local_date(row["tsevent"], zone), -1 if channel is None else channel, delivery_id, row["iofferid"] or 0)
        groups[key].append(row)

    cube: dict[tuple[Any, ...], Row] = {}
    for (day, channel, delivery_id, offer_id), rows in groups.items():
        statuses = [r["istatus"] for r in rows]
        presented, accepted, rejected = statuses.count(1), statuses.count(3), statuses.count(5)
        weights = [r["dweight"] for r in rows if r["dweight"] is not None]
        week, month, semester, year = levels(day)
        cube[(day, channel, delivery_id, offer_id)] = {
            "proposition_week": week, "proposition_month": month,
            "proposition_semester": semester, "proposition_year": year,
            "channel_label": code_label(channel, channels, "channel_label"),
            "delivery_label": link_label(delivery_id, deliveries, "slabel", "no delivery"),
            "offer_name": link_label(offer_id, offers, "sname", "no offer"),
            "offer_label": link_label(offer_id, offers, "slabel", "no offer"),
            "propositions": len(rows), "presented": presented, "accepted": accepted,
            "rejected": rejected, "control_group": statuses.count(99),
            "acceptance_rate": (Decimal(accepted) / Decimal(presented + accepted + rejected)
                                if presented + accepted + rejected else None),
            "recipients": len({r["irecipientid"] for r in rows if r["irecipientid"] not in (None, 0)}),
            "total_weight": sum(weights) if weights else None,
        }
    return cube


EVENT_TABLES = {"eventhisto": (("nmseventhisto", "bieventhistoid"),),
                "execution": (("nmsrtevent", "irteventid"), ("nmsbatchevent", "ibatcheventid"))}


def message_center_cube(connection: Any, schema: str, zone_name: str, mode: str) -> dict[tuple[Any, ...], Row]:
    zone = ZoneInfo(zone_name)
    statuses = seed("campaign_event_statuses")
    channels = seed("campaign_channels")
    preference = lambda r: tuple(_desc_nulls_last(r.get(c)) for c in ("tslastmodified", "istatus", "tscreated"))  # noqa: E731
    groups: dict[tuple[Any, ...], list[Row]] = defaultdict(list)
    for table, key in EVENT_TABLES[mode]:
        for row in dedupe(fetch(connection, schema, table), key, preference):
            event_type = (row["stype"] or "").strip(" \t\r\n") or "(none)"
            channel = -1 if row["iwishedchannel"] is None else row["iwishedchannel"]
            status = -1 if row["istatus"] is None else row["istatus"]
            groups[(local_date(row["tscreated"], zone), channel, status, event_type)].append(row)

    cube: dict[tuple[Any, ...], Row] = {}
    for (day, channel, status, event_type), rows in groups.items():
        durations = [(r["tsprocessed"] - r["tscreated"]).total_seconds()
                     for r in rows if r["tsprocessed"] is not None and r["tscreated"] is not None]
        week, month, semester, year = levels(day)
        cube[(day, channel, status, event_type)] = {
            "event_week": week, "event_month": month, "event_semester": semester, "event_year": year,
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

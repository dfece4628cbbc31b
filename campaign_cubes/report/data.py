"""What the report reads: grouped sums of the two published aggregates, and nothing else.

Every number is a sum (or a max) of the published columns over the period, so it
equals what a user gets from the aggregate with the same `group by`. Rates are
recomputed from summed counts, never averaged; `recipients` is never read (a
distinct count per row, not additive).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes import PROJECT_ROOT

PROPOSITIONS_TABLE = "agg_nmspropositionrcp_full"
EVENTS_TABLE = "agg_messagecenter_full"
EVENT_STATUS_SEED = PROJECT_ROOT / "seeds" / "campaign_event_statuses.csv"
# A sent message is an event with status `processed` (Campaign's name for "sent").
SENT_STATUS = "processed"
# Used only when the seed cannot be read: the statuses the specification lists as
# errors for service-level reporting (the seed's is_error flags say the same).
DEFAULT_ERROR_STATUSES = ("routingFailed", "tooOld", "deliveryFailed", "ignored")

# Shown for an offer or delivery whose label is NULL in Campaign.
NO_LABEL = sql.Literal("(no label)")

Bucket = Literal["day", "week", "month"]
# Longest span shown per day, then per week; longer spans are shown per month.
DAILY_MAX_DAYS = 92
WEEKLY_MAX_DAYS = 366


class ReportError(RuntimeError):
    """The report cannot be built (bad period, aggregates not published); worded for the user."""


# --- period and buckets -------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """Inclusive calendar days; None when the aggregates hold no dated row at all."""

    start: date | None
    end: date | None
    bucket: Bucket

    @property
    def empty(self) -> bool:
        return self.start is None or self.end is None

    @property
    def days(self) -> int:
        return 0 if self.start is None or self.end is None else (self.end - self.start).days + 1


def bucket_for(days: int) -> Bucket:
    if days <= DAILY_MAX_DAYS:
        return "day"
    return "week" if days <= WEEKLY_MAX_DAYS else "month"


def bucket_start(day: date, bucket: Bucket) -> date:
    """The first day of `day`'s bucket, as the aggregates' *_week / *_month columns hold it."""
    if bucket == "week":
        return day - timedelta(days=day.weekday())
    if bucket == "month":
        return day.replace(day=1)
    return day


def buckets(period: Period) -> list[date]:
    """Every bucket of the period, in order, including those without data."""
    if period.start is None or period.end is None:
        return []
    found: list[date] = []
    current: date | None = bucket_start(period.start, period.bucket)
    while current is not None and current <= period.end:
        found.append(current)
        current = _next_bucket(current, period.bucket)
    return found


def _next_bucket(current: date, bucket: Bucket) -> date | None:
    """The next bucket's first day; None past 9999-12-31, the last day Python (and the aggregates) hold."""
    try:
        if bucket == "day":
            return current + timedelta(days=1)
        if bucket == "week":
            return current + timedelta(days=7)
        return (current.replace(day=28) + timedelta(days=4)).replace(day=1)
    except OverflowError:
        return None


# --- reading ------------------------------------------------------------------------


def _rows(conn: connection, query: sql.Composable, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return list(cursor.fetchall())


def check_published(conn: connection, schema: str) -> None:
    """Fail with a clear message if either aggregate is not published in `schema`."""
    for table in (PROPOSITIONS_TABLE, EVENTS_TABLE):
        found = _rows(conn, sql.SQL("select to_regclass(%s)"), (f'"{schema}"."{table}"',))
        if not found or found[0][0] is None:
            raise ReportError(
                f"{schema}.{table} does not exist: build the aggregates first "
                "(orchestrate.py run), or set CAMPAIGN_CUBES_SCHEMA"
            )


def resolve_period(conn: connection, schema: str, start: date | None, end: date | None) -> Period:
    """The report's period: the given days; a missing bound is the data's first or last day."""
    if start and end and start > end:
        raise ReportError(f"--from {start} is after --to {end}")
    if start is None or end is None:
        query = sql.SQL(
            "select min(d), max(d) from ("
            " select proposition_date as d from {props} union all"
            " select event_date from {events}) as dates"
        ).format(props=sql.Identifier(schema, PROPOSITIONS_TABLE), events=sql.Identifier(schema, EVENTS_TABLE))
        first, last = _rows(conn, query)[0]
        if start is None:
            start = min(first, end) if first and end else (first or end)
        if end is None:
            end = max(last, start) if last and start else (last or start)
    days = 0 if start is None or end is None else (end - start).days + 1
    return Period(start=start, end=end, bucket=bucket_for(days))


def _seed_rows(seed: Path) -> list[dict[str, str]]:
    with seed.open(newline="") as handle:
        return list(csv.DictReader(handle))


def error_statuses(seed: Path = EVENT_STATUS_SEED) -> tuple[str, ...]:
    """The status names flagged is_error in the event-status seed (the project's own list)."""
    try:
        names = tuple(
            row["status_name"] for row in _seed_rows(seed) if row.get("is_error", "").strip().lower() == "true"
        )
    except (OSError, KeyError):
        return DEFAULT_ERROR_STATUSES
    return names or DEFAULT_ERROR_STATUSES


def status_labels(seed: Path = EVENT_STATUS_SEED) -> dict[str, str]:
    """status_name -> status_label from the event-status seed (empty if unreadable)."""
    try:
        return {row["status_name"]: row["status_label"] for row in _seed_rows(seed)}
    except (OSError, KeyError):
        return {}


# --- offer analysis -------------------------------------------------------------------


@dataclass(frozen=True)
class OfferCounts:
    propositions: int
    presented: int
    accepted: int
    rejected: int
    control_group: int

    @property
    def rate_base(self) -> int:
        """presented + accepted + rejected: the denominator of the acceptance rate."""
        return self.presented + self.accepted + self.rejected

    @property
    def acceptance_rate(self) -> float | None:
        return self.accepted / self.rate_base if self.rate_base else None


@dataclass(frozen=True)
class OfferGroup:
    """Counts of one member of a dimension (a channel, an offer, a delivery, a bucket)."""

    key: Any
    label: str
    counts: OfferCounts
    detail: str = ""


_OFFER_SUMS = sql.SQL(
    "sum(propositions)::bigint, sum(presented)::bigint, sum(accepted)::bigint,"
    " sum(rejected)::bigint, sum(control_group)::bigint"
)


def _counts(values: Sequence[Any]) -> OfferCounts:
    return OfferCounts(*(int(value or 0) for value in values))


def _offer_query(schema: str, keys: sql.Composable, order: str) -> sql.Composed:
    return sql.SQL(
        "select {keys}, {sums} from {table} where proposition_date between %s and %s group by {keys} order by {order}"
    ).format(keys=keys, sums=_OFFER_SUMS, table=sql.Identifier(schema, PROPOSITIONS_TABLE), order=sql.SQL(order))


def offers_by_bucket_and_channel(conn: connection, schema: str, period: Period) -> list[tuple[date, OfferGroup]]:
    """(bucket, channel counts) for each bucket and channel with propositions."""
    column = sql.Identifier(
        {"day": "proposition_date", "week": "proposition_week", "month": "proposition_month"}[period.bucket]
    )
    query = _offer_query(schema, sql.SQL("{}, channel_label").format(column), "1, 2")
    return [
        (row[0], OfferGroup(row[1], row[1], _counts(row[2:]))) for row in _rows(conn, query, (period.start, period.end))
    ]


def offers_by_channel(conn: connection, schema: str, period: Period) -> list[OfferGroup]:
    query = _offer_query(schema, sql.SQL("channel_code, channel_label"), "3 desc, 1")
    return [OfferGroup(row[0], row[1], _counts(row[2:])) for row in _rows(conn, query, (period.start, period.end))]


def offers_by_offer(conn: connection, schema: str, period: Period) -> list[OfferGroup]:
    """Every offer, the most responses (presented + accepted + rejected) first."""
    query = _offer_query(
        schema,
        sql.SQL("offer_id, coalesce(offer_label, offer_name, {})").format(NO_LABEL),
        "sum(presented) + sum(accepted) + sum(rejected) desc, 3 desc, 1",
    )
    return [OfferGroup(row[0], row[1], _counts(row[2:])) for row in _rows(conn, query, (period.start, period.end))]


def offers_by_delivery(conn: connection, schema: str, period: Period) -> list[OfferGroup]:
    """Every delivery, the most propositions first; `detail` lists its channels."""
    query = sql.SQL(
        "select delivery_id, coalesce(delivery_label, {no_label}),"
        " string_agg(distinct channel_label, ', ' order by channel_label), {sums}"
        " from {table} where proposition_date between %s and %s"
        " group by 1, 2 order by 4 desc, 1"
    ).format(no_label=NO_LABEL, sums=_OFFER_SUMS, table=sql.Identifier(schema, PROPOSITIONS_TABLE))
    return [
        OfferGroup(row[0], row[1], _counts(row[3:]), detail=row[2] or "")
        for row in _rows(conn, query, (period.start, period.end))
    ]


def undated_propositions(conn: connection, schema: str) -> int:
    query = sql.SQL("select coalesce(sum(propositions), 0)::bigint from {} where proposition_date is null")
    return int(_rows(conn, query.format(sql.Identifier(schema, PROPOSITIONS_TABLE)))[0][0])


# --- Message Center -------------------------------------------------------------------


@dataclass(frozen=True)
class EventGroup:
    """Events of one member of a dimension (an event type, a status, a bucket)."""

    key: Any
    label: str
    events: int
    sent: int = 0
    errors: int = 0

    @property
    def sent_rate(self) -> float | None:
        return self.sent / self.events if self.events else None

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.events if self.events else None


@dataclass(frozen=True)
class ProcessingTime:
    """Processing times of one channel; means are weighted by processed_events."""

    channel: str
    events: int
    processed_events: int
    mean_seconds: float | None
    mean_sent_seconds: float | None
    max_seconds: float | None


def _bucket_column(period: Period) -> sql.Identifier:
    return sql.Identifier({"day": "event_date", "week": "event_week", "month": "event_month"}[period.bucket])


def _event_query(schema: str, keys: sql.Composable, order: str) -> sql.Composed:
    return sql.SQL(
        "select {keys}, sum(events)::bigint,"
        " coalesce(sum(events) filter (where status_name = %s), 0)::bigint,"
        " coalesce(sum(events) filter (where status_name = any(%s)), 0)::bigint"
        " from {table} where event_date between %s and %s"
        " group by {keys} order by {order}"
    ).format(keys=keys, table=sql.Identifier(schema, EVENTS_TABLE), order=sql.SQL(order))


def _event_params(period: Period, errors: Sequence[str]) -> tuple[Any, ...]:
    return (SENT_STATUS, list(errors), period.start, period.end)


def events_by_bucket(conn: connection, schema: str, period: Period, errors: Sequence[str]) -> list[EventGroup]:
    query = _event_query(schema, _bucket_column(period), "1")
    return [
        EventGroup(row[0], str(row[0]), *map(int, row[1:])) for row in _rows(conn, query, _event_params(period, errors))
    ]


def events_by_type(conn: connection, schema: str, period: Period, errors: Sequence[str]) -> list[EventGroup]:
    query = _event_query(schema, sql.SQL("event_type"), "2 desc, 1")
    return [EventGroup(row[0], row[0], *map(int, row[1:])) for row in _rows(conn, query, _event_params(period, errors))]


def events_by_bucket_and_type(conn: connection, schema: str, period: Period) -> list[tuple[date, EventGroup]]:
    query = _event_query(schema, sql.SQL("{}, event_type").format(_bucket_column(period)), "1, 2")
    return [
        (row[0], EventGroup(row[1], row[1], *map(int, row[2:])))
        for row in _rows(conn, query, _event_params(period, ()))
    ]


def events_by_status(conn: connection, schema: str, period: Period) -> list[EventGroup]:
    """Events per status (key: status_name, label: status_label), the most first."""
    query = _event_query(schema, sql.SQL("status_name, status_label"), "3 desc, 1")
    return [EventGroup(row[0], row[1], int(row[2])) for row in _rows(conn, query, _event_params(period, ()))]


def errors_by_bucket_and_status(
    conn: connection, schema: str, period: Period, errors: Sequence[str]
) -> list[tuple[date, str, int]]:
    """(bucket, status_name, events) for the error statuses."""
    query = sql.SQL(
        "select {bucket}, status_name, sum(events)::bigint from {table}"
        " where event_date between %s and %s and status_name = any(%s)"
        " group by 1, 2 order by 1, 2"
    ).format(bucket=_bucket_column(period), table=sql.Identifier(schema, EVENTS_TABLE))
    return [(row[0], row[1], int(row[2])) for row in _rows(conn, query, (period.start, period.end, list(errors)))]


def _processing(conn: connection, schema: str, period: Period, key: sql.Composable) -> list[ProcessingTime]:
    """Mean (weighted by processed_events) and max processing time per `key`.

    Weighting by processed_events is exact here: a dated row's events all have
    `tscreated`, so its events with both timestamps are exactly its processed ones.
    """
    query = sql.SQL(
        "select {key}, sum(events)::bigint, sum(processed_events)::bigint,"
        " sum(avg_processing_seconds * processed_events) filter (where avg_processing_seconds is not null)"
        "   / nullif(sum(processed_events) filter (where avg_processing_seconds is not null), 0),"
        " sum(avg_processing_seconds * processed_events)"
        "   filter (where avg_processing_seconds is not null and status_name = %s)"
        "   / nullif(sum(processed_events)"
        "   filter (where avg_processing_seconds is not null and status_name = %s), 0),"
        " max(max_processing_seconds)"
        " from {table} where event_date between %s and %s"
        " group by 1 order by 3 desc, 1"
    ).format(key=key, table=sql.Identifier(schema, EVENTS_TABLE))
    rows = _rows(conn, query, (SENT_STATUS, SENT_STATUS, period.start, period.end))
    return [
        ProcessingTime(row[0], int(row[1]), int(row[2]), *(None if v is None else float(v) for v in row[3:]))
        for row in rows
    ]


def processing_by_channel(conn: connection, schema: str, period: Period) -> list[ProcessingTime]:
    """Per channel, the most processed events first."""
    return _processing(conn, schema, period, sql.SQL("channel_label"))


def processing_overall(conn: connection, schema: str, period: Period) -> ProcessingTime | None:
    """All channels together; None when the period has no event."""
    found = _processing(conn, schema, period, sql.SQL("'All channels'::text"))
    return found[0] if found else None


def undated_events(conn: connection, schema: str) -> int:
    query = sql.SQL("select coalesce(sum(events), 0)::bigint from {} where event_date is null")
    return int(_rows(conn, query.format(sql.Identifier(schema, EVENTS_TABLE)))[0][0])

"""The report's sections: read the aggregates, draw the charts, gather what the templates show.

Each section is a function of a `Context` returning an `html.Section`: the name of its
template (templates/<name>.html, which holds the prose) and the values it shows. An
empty period gives a "no data for this period" panel instead of charts and tables.
"""

from __future__ import annotations

import struct
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TypeVar

from psycopg2.extensions import connection

from campaign_cubes.report import charts, data, html
from campaign_cubes.report.data import EventGroup, OfferCounts, OfferGroup, Period, ProcessingTime

TOP_CHANNEL_PANELS = 6
TOP_OFFERS = 15
TOP_DELIVERIES = 20
TOP_EVENT_TYPES_CHART = 9
TOP_EVENT_TYPES_TABLE = 20
WORST_BUCKETS = 7
CHARTS_DIR = "charts"

T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    conn: connection
    schema: str
    period: Period
    out_dir: Path
    error_statuses: tuple[str, ...]

    def chart_path(self, name: str) -> Path:
        return self.out_dir / CHARTS_DIR / f"{name}.png"


# --- shared helpers -----------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    """Width and height of a PNG, from its IHDR chunk."""
    with path.open("rb") as handle:
        header = handle.read(24)
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def chart(path: Path, alt: str, caption: str) -> html.Figure:
    width, height = png_size(path)
    return html.Figure(f"{CHARTS_DIR}/{path.name}", alt, caption, width, height)


PARTIAL_BUCKETS = {
    "day": ".",
    "week": " (weeks run Monday to Sunday; the first and last may be partial).",
    "month": " (the first and last months may be partial).",
}


def per_bucket(period: Period) -> str:
    return f"per {period.bucket}"


def split_top(items: Sequence[T], top: int) -> tuple[list[T], list[T]]:
    """The first `top` items and the rest; no "rest" of a single item (show it instead)."""
    if len(items) <= top + 1:
        return list(items), []
    return list(items[:top]), list(items[top:])


def sum_counts(groups: Sequence[OfferGroup]) -> OfferCounts:
    return OfferCounts(
        *(
            sum(getattr(g.counts, f) for g in groups)
            for f in ("propositions", "presented", "accepted", "rejected", "control_group")
        )
    )


def offer_cells(counts: OfferCounts) -> list[html.Cell]:
    return [
        html.count(counts.propositions),
        html.count(counts.presented),
        html.count(counts.accepted),
        html.count(counts.rejected),
        html.count(counts.control_group),
        html.rate(counts.acceptance_rate),
    ]


OFFER_HEADERS = ("Propositions", "Presented", "Accepted", "Rejected", "Control group", "Acceptance rate")


def shorten(label: str, length: int = 46) -> str:
    return label if len(label) <= length else label[: length - 1] + "…"


# --- offer analysis -------------------------------------------------------------------


def offer_section(ctx: Context) -> html.Section:
    period = ctx.period
    by_channel = data.offers_by_channel(ctx.conn, ctx.schema, period) if not period.empty else []
    if not by_channel:
        return html.Section("offers.html", {"empty": html.NoData("No propositions", period.start, period.end)})
    offers = data.offers_by_offer(ctx.conn, ctx.schema, period)
    return html.Section(
        "offers.html",
        {
            "empty": None,
            "trend": offer_trend(ctx, by_channel),
            "channels": channel_table(by_channel),
            "acceptance": acceptance_chart(ctx, offers),
            "none_answered": html.NoData("No offer was presented, accepted or rejected", period.start, period.end),
            "offers": offer_table(offers),
            "deliveries": delivery_table(data.offers_by_delivery(ctx.conn, ctx.schema, period)),
        },
    )


def offer_trend(ctx: Context, by_channel: Sequence[OfferGroup]) -> html.Figure:
    rows = data.offers_by_bucket_and_channel(ctx.conn, ctx.schema, ctx.period)
    axis = data.buckets(ctx.period)
    shown, others = split_top(
        [g.label for g in by_channel],
        TOP_CHANNEL_PANELS - 1 if len(by_channel) > TOP_CHANNEL_PANELS else TOP_CHANNEL_PANELS,
    )
    other_name = f"all other channels ({len(others)})"
    cells: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for bucket, group in rows:
        panel = group.label if group.label in shown else other_name
        totals = cells[panel][bucket]
        for i, value in enumerate(
            (group.counts.presented, group.counts.accepted, group.counts.rejected, group.counts.control_group)
        ):
            totals[i] += value
    totals_by_label = {g.label: g.counts.propositions for g in by_channel}
    panels = []
    for name in [*shown, *([other_name] if others else [])]:
        total = totals_by_label.get(name, sum(totals_by_label[o] for o in others))
        series = {
            status: [cells[name][b][i] for b in axis]
            for i, status in enumerate(("presented", "accepted", "rejected", "control group"))
        }
        panels.append((f"{name} — {total:,} proposition{'s' * (total != 1)}", series))
    path = charts.status_lines_per_channel(
        ctx.chart_path("offers_by_status_per_channel"),
        f"Propositions by status, {per_bucket(ctx.period)}, per channel",
        axis,
        panels,
        f"propositions / {ctx.period.bucket}",
    )
    caption = (
        f"Presented, accepted, rejected and control-group propositions {per_bucket(ctx.period)}, one "
        "panel per channel, the largest first" + PARTIAL_BUCKETS[ctx.period.bucket]
    )
    return chart(path, "Propositions by status over time, one panel per channel", caption)


def channel_table(by_channel: Sequence[OfferGroup]) -> html.Table:
    rows = [[html.text(g.label), *offer_cells(g.counts)] for g in by_channel]
    footer = [[html.text("All channels"), *offer_cells(sum_counts(by_channel))]]
    return html.Table(
        "offers-by-channel", "Propositions by channel over the period.", ("Channel", *OFFER_HEADERS), rows, footer
    )


def acceptance_chart(ctx: Context, offers: Sequence[OfferGroup]) -> html.Figure | None:
    """The offers with the most responses by acceptance rate; None if no offer had a response."""
    answered = [g for g in offers if g.counts.rate_base > 0]
    top, _rest = split_top(answered, TOP_OFFERS)
    if not top:
        return None
    ranked = sorted(top, key=lambda g: (-(g.counts.acceptance_rate or 0.0), -g.counts.rate_base))
    path = charts.rate_bars(
        ctx.chart_path("acceptance_rate_by_offer"),
        f"Acceptance rate of the {len(top)} offers with the most responses",
        [shorten(g.label) for g in ranked],
        [g.counts.acceptance_rate or 0.0 for g in ranked],
        [f"{g.counts.accepted:,} of {g.counts.rate_base:,}" for g in ranked],
        "accepted ÷ (presented + accepted + rejected)",
    )
    return chart(
        path,
        "Acceptance rate by offer, top offers",
        f"The {len(top)} offers with the most responses (presented + accepted + rejected) "
        "in the period, highest acceptance rate first; in brackets accepted of responses.",
    )


def offer_table(offers: Sequence[OfferGroup]) -> html.Table:
    shown, rest = split_top(offers, TOP_OFFERS)
    rows = [[html.text(g.label, css="label"), html.text(g.key), *offer_cells(g.counts)] for g in shown]
    if rest:
        rows.append(
            [html.text(f"{len(rest):,} other offers", css="other"), html.text(""), *offer_cells(sum_counts(rest))]
        )
    footer = [[html.text(f"All {len(offers):,} offers"), html.text(""), *offer_cells(sum_counts(offers))]]
    return html.Table(
        "offers-by-offer", "Offers with the most responses first.", ("Offer", "Id", *OFFER_HEADERS), rows, footer
    )


def channels_cell(channels: str, most: int = 3) -> html.Cell:
    """A delivery's channels; a long list is counted, and listed in the cell's tooltip."""
    names = [c for c in channels.split(", ") if c]
    if len(names) <= most:
        return html.text(", ".join(names))
    return html.Cell(f"{len(names)} channels", title=", ".join(names))


def delivery_table(deliveries: Sequence[OfferGroup]) -> html.Table:
    shown, rest = split_top(deliveries, TOP_DELIVERIES)
    rows = [
        [html.text(g.label, css="label"), html.text(g.key), channels_cell(g.detail), *offer_cells(g.counts)]
        for g in shown
    ]
    if rest:
        rows.append(
            [
                html.text(f"{len(rest):,} other deliveries", css="other"),
                html.text(""),
                html.text(""),
                *offer_cells(sum_counts(rest)),
            ]
        )
    footer = [
        [
            html.text(f"All {len(deliveries):,} deliveries"),
            html.text(""),
            html.text(""),
            *offer_cells(sum_counts(deliveries)),
        ]
    ]
    caption = (
        f"The {len(shown)} deliveries with the most propositions"
        + (", then the others together." if rest else ".")
        + " Delivery 0 = no delivery (inbound)."
    )
    return html.Table("offers-by-delivery", caption, ("Delivery", "Id", "Channels", *OFFER_HEADERS), rows, footer)


# --- Message Center history -------------------------------------------------------------


def history_section(ctx: Context, by_bucket: Sequence[EventGroup]) -> html.Section:
    if not by_bucket:
        return html.Section(
            "history.html", {"empty": html.NoData("No Message Center events", ctx.period.start, ctx.period.end)}
        )
    axis = data.buckets(ctx.period)
    return html.Section(
        "history.html",
        {
            "empty": None,
            "types": types_chart(ctx, axis),
            "sent": sent_chart(ctx, axis, by_bucket),
            "by_type": type_table(data.events_by_type(ctx.conn, ctx.schema, ctx.period, ctx.error_statuses)),
        },
    )


def types_chart(ctx: Context, axis: Sequence[date]) -> html.Figure:
    rows = data.events_by_bucket_and_type(ctx.conn, ctx.schema, ctx.period)
    totals: dict[str, int] = defaultdict(int)
    for _bucket, group in rows:
        totals[group.label] += group.events
    ranked = sorted(totals, key=lambda name: (-totals[name], name))
    shown, others = split_top(ranked, TOP_EVENT_TYPES_CHART)
    other_name = f"all other types ({len(others)})"
    cells: dict[str, dict[date, int]] = defaultdict(lambda: defaultdict(int))
    for bucket, group in rows:
        cells[group.label if group.label in shown else other_name][bucket] += group.events
    series = {shorten(name, 40): [cells[name][b] for b in axis] for name in [*shown, *([other_name] if others else [])]}
    path = charts.stacked_areas(
        ctx.chart_path("events_by_type"),
        f"Events received by type, {per_bucket(ctx.period)}",
        axis,
        series,
        f"events / {ctx.period.bucket}",
    )
    return chart(
        path,
        "Events received by type over time",
        f"Events received {per_bucket(ctx.period)}, stacked by event type: the {len(shown)} most "
        "frequent types" + (", the others together." if others else "."),
    )


def sent_chart(ctx: Context, axis: Sequence[date], by_bucket: Sequence[EventGroup]) -> html.Figure:
    found = {g.key: g for g in by_bucket}
    received = [found[b].events if b in found else 0 for b in axis]
    sent = [found[b].sent if b in found else 0 for b in axis]
    rates = [found[b].sent_rate if b in found else None for b in axis]
    path = charts.volume_and_rate(
        ctx.chart_path("sent_rate"),
        f"Events received and sent, {per_bucket(ctx.period)}",
        axis,
        {"received": received, "sent": sent},
        rates,
        f"events / {ctx.period.bucket}",
        "sent rate",
    )
    return chart(
        path,
        "Events received and sent, and the sent rate, over time",
        f"Above: events received and sent {per_bucket(ctx.period)}. Below: sent rate = sent ÷ received "
        "(no point where nothing was received).",
    )


def event_cells(group: EventGroup) -> list[html.Cell]:
    return [
        html.count(group.events),
        html.count(group.sent),
        html.rate(group.sent_rate),
        html.count(group.errors),
        html.rate(group.error_rate),
    ]


def sum_events(groups: Sequence[EventGroup], label: str) -> EventGroup:
    return EventGroup(
        label, label, sum(g.events for g in groups), sum(g.sent for g in groups), sum(g.errors for g in groups)
    )


def type_table(by_type: Sequence[EventGroup]) -> html.Table:
    shown, rest = split_top(by_type, TOP_EVENT_TYPES_TABLE)
    rows = [[html.text(g.label), *event_cells(g)] for g in shown]
    if rest:
        other = sum_events(rest, f"{len(rest):,} other types")
        rows.append([html.text(other.label, css="other"), *event_cells(other)])
    footer = [[html.text(f"All {len(by_type):,} event types"), *event_cells(sum_events(by_type, ""))]]
    return html.Table(
        "events-by-type",
        "Events by type over the period, the most frequent first.",
        ("Event type", "Events", "Sent", "Sent rate", "Errors", "Error rate"),
        rows,
        footer,
    )


# --- service level -----------------------------------------------------------------------


def error_kind_label(name: str, labels: dict[str, str]) -> str:
    label = labels.get(name, name)
    return label if label == name else f"{label} ({name})"


def service_section(ctx: Context, by_bucket: Sequence[EventGroup]) -> html.Section:
    if not by_bucket:
        return html.Section(
            "service.html",
            {
                "empty": html.NoData("No Message Center events", ctx.period.start, ctx.period.end),
                "error_statuses": ctx.error_statuses,
            },
        )
    statuses = data.events_by_status(ctx.conn, ctx.schema, ctx.period)
    labels = {**data.status_labels(), **{g.key: g.label for g in statuses}}
    axis = data.buckets(ctx.period)
    return html.Section(
        "service.html",
        {
            "empty": None,
            "error_statuses": ctx.error_statuses,
            "errors": error_chart(ctx, axis, by_bucket, labels),
            "by_kind": error_table(ctx, statuses, labels),
            "worst": worst_table(ctx, by_bucket),
        },
    )


def error_chart(
    ctx: Context, axis: Sequence[date], by_bucket: Sequence[EventGroup], labels: dict[str, str]
) -> html.Figure:
    received = {g.key: g.events for g in by_bucket}
    errors: dict[str, dict[date, int]] = defaultdict(dict)
    for bucket, name, events in data.errors_by_bucket_and_status(ctx.conn, ctx.schema, ctx.period, ctx.error_statuses):
        errors[name][bucket] = events
    series = {
        error_kind_label(name, labels): [
            errors[name].get(b, 0) / received[b] if received.get(b) else None for b in axis
        ]
        for name in ctx.error_statuses
    }
    path = charts.stacked_areas(
        ctx.chart_path("error_rate"),
        f"Error rate {per_bucket(ctx.period)}, by kind of error",
        axis,
        series,
        "% of events received",
        percent=True,
        colours=charts.ERROR_COLOURS,
    )
    return chart(
        path,
        "Error rate over time, stacked by kind of error",
        f"Share of the events received each {ctx.period.bucket} that ended in each kind of error; the "
        "stack's height is the error rate.",
    )


def error_table(ctx: Context, statuses: Sequence[EventGroup], labels: dict[str, str]) -> html.Table:
    total = sum(g.events for g in statuses)
    counts = {g.key: g.events for g in statuses}
    errors = sum(counts.get(name, 0) for name in ctx.error_statuses)
    rows = [
        [
            html.text(error_kind_label(name, labels)),
            html.count(counts.get(name, 0)),
            html.rate(counts.get(name, 0) / total if total else None),
            html.rate(counts.get(name, 0) / errors if errors else None),
        ]
        for name in sorted(ctx.error_statuses, key=lambda n: -counts.get(n, 0))
    ]
    footer = [
        [
            html.text("All errors"),
            html.count(errors),
            html.rate(errors / total if total else None),
            html.rate(1.0 if errors else None),
        ],
        [html.text("All events received"), html.count(total), html.rate(1.0 if total else None), html.text("")],
    ]
    return html.Table(
        "errors-by-kind",
        "Error events by kind over the period.",
        ("Kind of error (status)", "Events", "Share of events received", "Share of errors"),
        rows,
        footer,
    )


def bucket_name(start: date, period: Period) -> str:
    if period.bucket == "month":
        return f"{start:%B %Y}"
    if period.bucket == "week":
        return f"week of {html.long_date(start)}"
    return f"{start:%a} {html.long_date(start)}"


def worst_table(ctx: Context, by_bucket: Sequence[EventGroup]) -> html.Table:
    worst = sorted((g for g in by_bucket if g.events), key=lambda g: (-(g.error_rate or 0.0), -g.events))
    rows = [
        [html.text(bucket_name(g.key, ctx.period)), html.count(g.events), html.count(g.errors), html.rate(g.error_rate)]
        for g in worst[:WORST_BUCKETS]
    ]
    return html.Table(
        "worst-periods",
        f"The {ctx.period.bucket}s with the highest error rate"
        + (" (a week is named by its Monday)." if ctx.period.bucket == "week" else "."),
        (ctx.period.bucket.capitalize(), "Events", "Errors", "Error rate"),
        rows,
    )


# --- processing time ----------------------------------------------------------------------


def processing_section(ctx: Context) -> html.Section:
    by_channel = data.processing_by_channel(ctx.conn, ctx.schema, ctx.period) if not ctx.period.empty else []
    timed = [p for p in by_channel if p.mean_seconds is not None]
    if not timed:
        what = "No processed Message Center events" if by_channel else "No Message Center events"
        return html.Section("processing.html", {"empty": html.NoData(what, ctx.period.start, ctx.period.end)})
    overall = data.processing_overall(ctx.conn, ctx.schema, ctx.period)
    path = charts.duration_bars(
        ctx.chart_path("processing_time"),
        "Processing time by channel",
        [p.channel for p in timed],
        [
            (
                "Mean",
                {
                    "all finished events": [p.mean_seconds for p in timed],
                    "sent events": [p.mean_sent_seconds for p in timed],
                },
            ),
            ("Maximum", {"all finished events": [p.max_seconds for p in timed]}),
        ],
    )
    return html.Section(
        "processing.html",
        {
            "empty": None,
            "chart": chart(
                path,
                "Mean and maximum processing time by channel",
                "Mean (weighted by processed events) and maximum processing time per channel, "
                "channels with the most processed events first; n/a = no sent event.",
            ),
            "by_channel": processing_table(by_channel, overall),
        },
    )


def processing_cells(p: ProcessingTime) -> list[html.Cell]:
    def shown(value: float | None) -> html.Cell:
        return html.seconds(value, "" if value is None else charts.format_duration(value))

    return [
        html.count(p.events),
        html.count(p.processed_events),
        shown(p.mean_seconds),
        shown(p.mean_sent_seconds),
        shown(p.max_seconds),
    ]


def processing_table(by_channel: Sequence[ProcessingTime], overall: ProcessingTime | None) -> html.Table:
    rows = [[html.text(p.channel), *processing_cells(p)] for p in by_channel]
    footer = [[html.text("All channels"), *processing_cells(overall)]] if overall else []
    return html.Table(
        "processing-by-channel",
        "Processing time by channel over the period.",
        ("Channel", "Events", "Processed events", "Mean, all finished", "Mean, sent", "Maximum"),
        rows,
        footer,
    )


# --- key figures ---------------------------------------------------------------------------


def kpis(ctx: Context, by_bucket: Sequence[EventGroup]) -> list[html.Kpi]:
    period = ctx.period
    channels = data.offers_by_channel(ctx.conn, ctx.schema, period) if not period.empty else []
    offers = sum_counts(channels)
    events = sum_events(by_bucket, "all")
    overall = data.processing_overall(ctx.conn, ctx.schema, period) if not period.empty else None

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"

    mean = overall.mean_seconds if overall else None
    return [
        html.Kpi("Propositions", f"{offers.propositions:,}", f"{offers.accepted:,} accepted", "propositions"),
        html.Kpi(
            "Acceptance rate", share(offers.acceptance_rate), f"of {offers.rate_base:,} responses", "acceptance_rate"
        ),
        html.Kpi("Events received", f"{events.events:,}", f"{events.sent:,} sent", "events"),
        html.Kpi("Sent rate", share(events.sent_rate), "sent ÷ received", "sent_rate"),
        html.Kpi("Error rate", share(events.error_rate), f"{events.errors:,} errors", "error_rate"),
        html.Kpi(
            "Mean processing",
            "–" if mean is None else charts.format_duration(mean),
            "all finished events",
            "processing",
        ),
    ]

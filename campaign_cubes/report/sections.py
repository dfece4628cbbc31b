"""The report's sections: read the aggregates, draw the charts, write the HTML.

Each section is a function of a `Context` returning its HTML; an empty period gives
a "no data for this period" panel instead of charts and tables.
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


def chart(path: Path, alt: str, caption: str) -> str:
    width, height = png_size(path)
    return html.figure(f"{CHARTS_DIR}/{path.name}", alt, caption, width, height)


PARTIAL_BUCKETS = {"day": ".", "week": " (weeks run Monday to Sunday; the first and last may be partial).",
                   "month": " (the first and last months may be partial)."}


def per_bucket(period: Period) -> str:
    return f"per {period.bucket}"


def split_top(items: Sequence[T], top: int) -> tuple[list[T], list[T]]:
    """The first `top` items and the rest; no "rest" of a single item (show it instead)."""
    if len(items) <= top + 1:
        return list(items), []
    return list(items[:top]), list(items[top:])


def sum_counts(groups: Sequence[OfferGroup]) -> OfferCounts:
    return OfferCounts(*(sum(getattr(g.counts, f) for g in groups)
                         for f in ("propositions", "presented", "accepted", "rejected", "control_group")))


def offer_cells(counts: OfferCounts) -> list[html.Cell]:
    return [html.count(counts.propositions), html.count(counts.presented), html.count(counts.accepted),
            html.count(counts.rejected), html.count(counts.control_group), html.rate(counts.acceptance_rate)]


OFFER_HEADERS = ("Propositions", "Presented", "Accepted", "Rejected", "Control group", "Acceptance rate")


def shorten(label: str, length: int = 46) -> str:
    return label if len(label) <= length else label[: length - 1] + "…"


# --- offer analysis -------------------------------------------------------------------

def offer_section(ctx: Context) -> str:
    period = ctx.period
    by_channel = data.offers_by_channel(ctx.conn, ctx.schema, period) if not period.empty else []
    intro = ('<p class="lead">Propositions by status over time, per channel; acceptance rate by offer; '
             "deliveries. Source: <code>agg_nmspropositionrcp_full</code>.</p>")
    notes = html.note(
        "The offer space is not a dimension of <code>agg_nmspropositionrcp_full</code> (its grain is date × "
        "channel × delivery × offer), so this report breaks down by <b>channel</b> (the space's channel, or "
        "the delivery's when the space has none) and by <b>delivery</b>, not by space.",
        "Acceptance rate = accepted ÷ (presented + accepted + rejected), computed from the summed counts of "
        "the rows, never by averaging rates. Propositions also count statuses that are none of these "
        "(control group, other codes). Recipients are not shown: the aggregate's distinct count per row "
        "cannot be added across days, offers or deliveries.",
    )
    if not by_channel:
        return section("offers", "Offer analysis", intro + html.no_data("No propositions", period.start, period.end)
                       + notes)
    parts = [intro, offer_trend(ctx, by_channel), "<h3>By channel</h3>", channel_table(by_channel)]
    parts += offer_parts(ctx, data.offers_by_offer(ctx.conn, ctx.schema, period))
    parts += ["<h3>Deliveries</h3>", delivery_table(data.offers_by_delivery(ctx.conn, ctx.schema, period))]
    return section("offers", "Offer analysis", "".join(parts) + notes)


def offer_trend(ctx: Context, by_channel: Sequence[OfferGroup]) -> str:
    rows = data.offers_by_bucket_and_channel(ctx.conn, ctx.schema, ctx.period)
    axis = data.buckets(ctx.period)
    shown, others = split_top([g.label for g in by_channel], TOP_CHANNEL_PANELS - 1
                              if len(by_channel) > TOP_CHANNEL_PANELS else TOP_CHANNEL_PANELS)
    other_name = f"all other channels ({len(others)})"
    cells: dict[str, dict[date, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0, 0]))
    for bucket, group in rows:
        panel = group.label if group.label in shown else other_name
        totals = cells[panel][bucket]
        for i, value in enumerate((group.counts.presented, group.counts.accepted, group.counts.rejected,
                                   group.counts.control_group)):
            totals[i] += value
    totals_by_label = {g.label: g.counts.propositions for g in by_channel}
    panels = []
    for name in [*shown, *([other_name] if others else [])]:
        total = totals_by_label.get(name, sum(totals_by_label[o] for o in others))
        series = {status: [cells[name][b][i] for b in axis]
                  for i, status in enumerate(("presented", "accepted", "rejected", "control group"))}
        panels.append((f"{name} — {total:,} proposition{'s' * (total != 1)}", series))
    path = charts.status_lines_per_channel(
        ctx.chart_path("offers_by_status_per_channel"),
        f"Propositions by status, {per_bucket(ctx.period)}, per channel", axis, panels,
        f"propositions / {ctx.period.bucket}")
    caption = (f"Presented, accepted, rejected and control-group propositions {per_bucket(ctx.period)}, one "
               "panel per channel, the largest first" + PARTIAL_BUCKETS[ctx.period.bucket])
    return chart(path, "Propositions by status over time, one panel per channel", caption)


def channel_table(by_channel: Sequence[OfferGroup]) -> str:
    rows = [[html.text(g.label), *offer_cells(g.counts)] for g in by_channel]
    footer = [[html.text("All channels"), *offer_cells(sum_counts(by_channel))]]
    return html.table("offers-by-channel", "Propositions by channel over the period.",
                      ("Channel", *OFFER_HEADERS), rows, footer)


def offer_parts(ctx: Context, offers: Sequence[OfferGroup]) -> list[str]:
    answered = [g for g in offers if g.counts.rate_base > 0]
    parts = ["<h3>Acceptance rate by offer</h3>"]
    top, _rest = split_top(answered, TOP_OFFERS)
    if top:
        ranked = sorted(top, key=lambda g: (-(g.counts.acceptance_rate or 0.0), -g.counts.rate_base))
        path = charts.rate_bars(
            ctx.chart_path("acceptance_rate_by_offer"),
            f"Acceptance rate of the {len(top)} offers with the most responses",
            [shorten(g.label) for g in ranked], [g.counts.acceptance_rate or 0.0 for g in ranked],
            [f"{g.counts.accepted:,} of {g.counts.rate_base:,}" for g in ranked],
            "accepted ÷ (presented + accepted + rejected)")
        parts.append(chart(path, "Acceptance rate by offer, top offers",
                           f"The {len(top)} offers with the most responses (presented + accepted + rejected) "
                           "in the period, highest acceptance rate first; in brackets accepted of responses."))
    else:
        parts.append(html.no_data("No offer was presented, accepted or rejected", ctx.period.start, ctx.period.end))
    shown, rest = split_top(offers, TOP_OFFERS)
    rows = [[html.text(g.label, css="label"), html.text(g.key), *offer_cells(g.counts)] for g in shown]
    if rest:
        rows.append([html.text(f"{len(rest):,} other offers", css="other"), html.text(""),
                     *offer_cells(sum_counts(rest))])
    footer = [[html.text(f"All {len(offers):,} offers"), html.text(""), *offer_cells(sum_counts(offers))]]
    parts.append(html.table("offers-by-offer", "Offers with the most responses first.",
                            ("Offer", "Id", *OFFER_HEADERS), rows, footer))
    return parts


def channels_cell(channels: str, most: int = 3) -> html.Cell:
    """A delivery's channels; a long list is counted, and listed in the cell's tooltip."""
    names = [c for c in channels.split(", ") if c]
    if len(names) <= most:
        return html.text(", ".join(names))
    return html.Cell(f"{len(names)} channels", title=", ".join(names))


def delivery_table(deliveries: Sequence[OfferGroup]) -> str:
    shown, rest = split_top(deliveries, TOP_DELIVERIES)
    rows = [[html.text(g.label, css="label"), html.text(g.key), channels_cell(g.detail), *offer_cells(g.counts)]
            for g in shown]
    if rest:
        rows.append([html.text(f"{len(rest):,} other deliveries", css="other"), html.text(""), html.text(""),
                     *offer_cells(sum_counts(rest))])
    footer = [[html.text(f"All {len(deliveries):,} deliveries"), html.text(""), html.text(""),
               *offer_cells(sum_counts(deliveries))]]
    caption = (f"The {len(shown)} deliveries with the most propositions"
               + (", then the others together." if rest else ".") + " Delivery 0 = no delivery (inbound).")
    return html.table("offers-by-delivery", caption, ("Delivery", "Id", "Channels", *OFFER_HEADERS),
                      rows, footer)


# --- Message Center history -------------------------------------------------------------

UNCONFIRMED = ("Event status codes are a working hypothesis (seed <code>campaign_event_statuses</code>, all "
               "unconfirmed): statuses are read by their names (<code>status_name</code>).")


def history_section(ctx: Context, by_bucket: Sequence[EventGroup]) -> str:
    intro = ('<p class="lead">Events received by type and period, and the sent rate. '
             "Source: <code>agg_messagecenter_full</code>.</p>")
    notes = html.note(
        "Sent = events with status <code>processed</code>; sent rate = sent ÷ events received, from summed "
        "counts. An event is counted on the day it was received (<code>tscreated</code>), whatever its "
        "final state.", UNCONFIRMED)
    if not by_bucket:
        return section("history", "Message Center history",
                       intro + html.no_data("No Message Center events", ctx.period.start, ctx.period.end) + notes)
    axis = data.buckets(ctx.period)
    parts = [intro, types_chart(ctx, axis), sent_chart(ctx, axis, by_bucket), "<h3>By event type</h3>",
             type_table(data.events_by_type(ctx.conn, ctx.schema, ctx.period, ctx.error_statuses))]
    return section("history", "Message Center history", "".join(parts) + notes)


def types_chart(ctx: Context, axis: Sequence[date]) -> str:
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
    path = charts.stacked_areas(ctx.chart_path("events_by_type"),
                                f"Events received by type, {per_bucket(ctx.period)}", axis, series,
                                f"events / {ctx.period.bucket}")
    return chart(path, "Events received by type over time",
                 f"Events received {per_bucket(ctx.period)}, stacked by event type: the {len(shown)} most "
                 "frequent types" + (", the others together." if others else "."))


def sent_chart(ctx: Context, axis: Sequence[date], by_bucket: Sequence[EventGroup]) -> str:
    found = {g.key: g for g in by_bucket}
    received = [found[b].events if b in found else 0 for b in axis]
    sent = [found[b].sent if b in found else 0 for b in axis]
    rates = [found[b].sent_rate if b in found else None for b in axis]
    path = charts.volume_and_rate(ctx.chart_path("sent_rate"), f"Events received and sent, {per_bucket(ctx.period)}",
                                  axis, {"received": received, "sent": sent}, rates,
                                  f"events / {ctx.period.bucket}", "sent rate")
    return chart(path, "Events received and sent, and the sent rate, over time",
                 f"Above: events received and sent {per_bucket(ctx.period)}. Below: sent rate = sent ÷ received "
                 "(no point where nothing was received).")


def event_cells(group: EventGroup) -> list[html.Cell]:
    return [html.count(group.events), html.count(group.sent), html.rate(group.sent_rate),
            html.count(group.errors), html.rate(group.error_rate)]


def sum_events(groups: Sequence[EventGroup], label: str) -> EventGroup:
    return EventGroup(label, label, sum(g.events for g in groups), sum(g.sent for g in groups),
                      sum(g.errors for g in groups))


def type_table(by_type: Sequence[EventGroup]) -> str:
    shown, rest = split_top(by_type, TOP_EVENT_TYPES_TABLE)
    rows = [[html.text(g.label), *event_cells(g)] for g in shown]
    if rest:
        other = sum_events(rest, f"{len(rest):,} other types")
        rows.append([html.text(other.label, css="other"), *event_cells(other)])
    footer = [[html.text(f"All {len(by_type):,} event types"), *event_cells(sum_events(by_type, ""))]]
    return html.table("events-by-type", "Events by type over the period, the most frequent first.",
                      ("Event type", "Events", "Sent", "Sent rate", "Errors", "Error rate"), rows, footer)


# --- service level -----------------------------------------------------------------------

def error_kind_label(name: str, labels: dict[str, str]) -> str:
    label = labels.get(name, name)
    return label if label == name else f"{label} ({name})"


def service_section(ctx: Context, by_bucket: Sequence[EventGroup]) -> str:
    names = ", ".join(f"<code>{n}</code>" for n in ctx.error_statuses)
    intro = ('<p class="lead">Error rate by day and by kind of error: routing failed, expired, delivery failed, '
             "ignored. Source: <code>agg_messagecenter_full</code>.</p>")
    notes = html.note(
        f"Errors = events whose status is flagged <code>is_error</code> in "
        f"<code>seeds/campaign_event_statuses.csv</code>: {names}. Error rate = error events ÷ events received "
        "in the same period. Statuses the seed does not know (<code>unknown (…)</code>) are not counted as "
        "errors.", UNCONFIRMED)
    if not by_bucket:
        return section("service", "Service level",
                       intro + html.no_data("No Message Center events", ctx.period.start, ctx.period.end) + notes)
    statuses = data.events_by_status(ctx.conn, ctx.schema, ctx.period)
    labels = {**data.status_labels(), **{g.key: g.label for g in statuses}}
    axis = data.buckets(ctx.period)
    parts = [intro, error_chart(ctx, axis, by_bucket, labels), "<h3>By kind of error</h3>",
             error_table(ctx, statuses, labels), "<h3>Highest error rates</h3>", worst_table(ctx, by_bucket)]
    return section("service", "Service level", "".join(parts) + notes)


def error_chart(ctx: Context, axis: Sequence[date], by_bucket: Sequence[EventGroup], labels: dict[str, str]) -> str:
    received = {g.key: g.events for g in by_bucket}
    errors: dict[str, dict[date, int]] = defaultdict(dict)
    for bucket, name, events in data.errors_by_bucket_and_status(ctx.conn, ctx.schema, ctx.period,
                                                                  ctx.error_statuses):
        errors[name][bucket] = events
    series = {error_kind_label(name, labels): [errors[name].get(b, 0) / received[b] if received.get(b) else None
                                               for b in axis]
              for name in ctx.error_statuses}
    path = charts.stacked_areas(ctx.chart_path("error_rate"), f"Error rate {per_bucket(ctx.period)}, by kind of error",
                                axis, series, "% of events received", percent=True, colours=charts.ERROR_COLOURS)
    return chart(path, "Error rate over time, stacked by kind of error",
                 f"Share of the events received each {ctx.period.bucket} that ended in each kind of error; the "
                 "stack's height is the error rate.")


def error_table(ctx: Context, statuses: Sequence[EventGroup], labels: dict[str, str]) -> str:
    total = sum(g.events for g in statuses)
    counts = {g.key: g.events for g in statuses}
    errors = sum(counts.get(name, 0) for name in ctx.error_statuses)
    rows = [[html.text(error_kind_label(name, labels)), html.count(counts.get(name, 0)),
             html.rate(counts.get(name, 0) / total if total else None),
             html.rate(counts.get(name, 0) / errors if errors else None)]
            for name in sorted(ctx.error_statuses, key=lambda n: -counts.get(n, 0))]
    footer = [[html.text("All errors"), html.count(errors), html.rate(errors / total if total else None),
               html.rate(1.0 if errors else None)],
              [html.text("All events received"), html.count(total), html.rate(1.0 if total else None),
               html.text("")]]
    return html.table("errors-by-kind", "Error events by kind over the period.",
                      ("Kind of error (status)", "Events", "Share of events received", "Share of errors"),
                      rows, footer)


def bucket_name(start: date, period: Period) -> str:
    if period.bucket == "month":
        return f"{start:%B %Y}"
    if period.bucket == "week":
        return f"week of {html.long_date(start)}"
    return f"{start:%a} {html.long_date(start)}"


def worst_table(ctx: Context, by_bucket: Sequence[EventGroup]) -> str:
    worst = sorted((g for g in by_bucket if g.events), key=lambda g: (-(g.error_rate or 0.0), -g.events))
    rows = [[html.text(bucket_name(g.key, ctx.period)), html.count(g.events), html.count(g.errors),
             html.rate(g.error_rate)]
            for g in worst[:WORST_BUCKETS]]
    return html.table("worst-periods", f"The {ctx.period.bucket}s with the highest error rate"
                      + (" (a week is named by its Monday)." if ctx.period.bucket == "week" else "."),
                      (ctx.period.bucket.capitalize(), "Events", "Errors", "Error rate"), rows)


# --- processing time ----------------------------------------------------------------------

def processing_section(ctx: Context) -> str:
    intro = ('<p class="lead">Time from reception to the end of processing (<code>tsprocessed − tscreated</code>), '
             "mean and maximum by channel. Source: <code>agg_messagecenter_full</code>.</p>")
    notes = html.note(
        "The aggregate holds a mean per row (date × channel × status × event type). Means over several rows "
        "are weighted by <code>processed_events</code>: this is exact, not an approximation, because every "
        "event of a dated row has <code>tscreated</code>, so its events with both timestamps are exactly its "
        "processed ones (and the undated row has no mean).",
        "“All finished events” includes every final state (sent, expired, failed, ignored); expired events "
        "wait long, so the mean of sent events is shown beside it. Maximum = the largest row maximum.",
        UNCONFIRMED)
    by_channel = data.processing_by_channel(ctx.conn, ctx.schema, ctx.period) if not ctx.period.empty else []
    timed = [p for p in by_channel if p.mean_seconds is not None]
    if not timed:
        what = "No processed Message Center events" if by_channel else "No Message Center events"
        return section("processing", "Processing time",
                       intro + html.no_data(what, ctx.period.start, ctx.period.end) + notes)
    overall = data.processing_overall(ctx.conn, ctx.schema, ctx.period)
    path = charts.duration_bars(
        ctx.chart_path("processing_time"), "Processing time by channel", [p.channel for p in timed],
        [("Mean", {"all finished events": [p.mean_seconds for p in timed],
                   "sent events": [p.mean_sent_seconds for p in timed]}),
         ("Maximum", {"all finished events": [p.max_seconds for p in timed]})])
    parts = [intro, chart(path, "Mean and maximum processing time by channel",
                          "Mean (weighted by processed events) and maximum processing time per channel, "
                          "channels with the most processed events first; n/a = no sent event."),
             processing_table(by_channel, overall)]
    return section("processing", "Processing time", "".join(parts) + notes)


def processing_cells(p: ProcessingTime) -> list[html.Cell]:
    def shown(value: float | None) -> html.Cell:
        return html.seconds(value, "" if value is None else charts.format_duration(value))
    return [html.count(p.events), html.count(p.processed_events), shown(p.mean_seconds),
            shown(p.mean_sent_seconds), shown(p.max_seconds)]


def processing_table(by_channel: Sequence[ProcessingTime], overall: ProcessingTime | None) -> str:
    rows = [[html.text(p.channel), *processing_cells(p)] for p in by_channel]
    footer = [[html.text("All channels"), *processing_cells(overall)]] if overall else []
    return html.table("processing-by-channel", "Processing time by channel over the period.",
                      ("Channel", "Events", "Processed events", "Mean, all finished", "Mean, sent", "Maximum"),
                      rows, footer)


# --- page ------------------------------------------------------------------------------------

def section(anchor: str, title: str, body: str) -> str:
    return f'<section class="report" id="{anchor}"><h2>{title}</h2>{body}</section>'


def kpis(ctx: Context, by_bucket: Sequence[EventGroup]) -> str:
    period = ctx.period
    channels = data.offers_by_channel(ctx.conn, ctx.schema, period) if not period.empty else []
    offers = sum_counts(channels)
    events = sum_events(by_bucket, "all")
    overall = data.processing_overall(ctx.conn, ctx.schema, period) if not period.empty else None

    def share(value: float | None) -> str:
        return "–" if value is None else f"{value:.1%}"
    mean = overall.mean_seconds if overall else None
    cards = [
        html.kpi("Propositions", f"{offers.propositions:,}", f"{offers.accepted:,} accepted", "propositions"),
        html.kpi("Acceptance rate", share(offers.acceptance_rate),
                 f"of {offers.rate_base:,} responses", "acceptance_rate"),
        html.kpi("Events received", f"{events.events:,}", f"{events.sent:,} sent", "events"),
        html.kpi("Sent rate", share(events.sent_rate), "sent ÷ received", "sent_rate"),
        html.kpi("Error rate", share(events.error_rate), f"{events.errors:,} errors", "error_rate"),
        html.kpi("Mean processing", "–" if mean is None else charts.format_duration(mean),
                 "all finished events", "processing"),
    ]
    return '<div class="kpis">' + "".join(cards) + "</div>"


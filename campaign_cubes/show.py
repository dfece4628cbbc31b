"""A quick look at the published aggregates from the terminal."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import psycopg2
from psycopg2 import sql

# The published relations and the order that shows the most recent, biggest groups first.
AGGREGATES = (
    (
        "agg_messagecenter_full",
        "event_date desc nulls last, events desc",
        (
            "event_date",
            "channel_label",
            "status_name",
            "event_type",
            "events",
            "processed_events",
            "avg_processing_seconds",
        ),
    ),
    (
        "agg_nmspropositionrcp_full",
        "proposition_date desc nulls last, propositions desc",
        (
            "proposition_date",
            "channel_label",
            "delivery_label",
            "offer_label",
            "propositions",
            "accepted",
            "acceptance_rate",
        ),
    ),
)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    lines = [
        "  ".join(header.ljust(width) for header, width in zip(headers, widths, strict=True)),
        "  ".join("-" * width for width in widths),
    ]
    lines += ["  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def show_aggregates(schema: str, limit: int) -> None:
    with psycopg2.connect() as connection, connection.cursor() as cursor:
        for table, order, columns in AGGREGATES:
            relation = sql.Identifier(schema, table)
            cursor.execute(sql.SQL("select count(*) from {}").format(relation))
            (total,) = cursor.fetchone() or (0,)
            cursor.execute(
                sql.SQL("select {} from {} order by {} limit %s").format(
                    sql.SQL(", ").join(map(sql.Identifier, columns)), relation, sql.SQL(order)
                ),
                (limit,),
            )
            print(f"\n{schema}.{table}: {total} rows; the {limit} most recent groups")
            print(format_table(columns, cursor.fetchall()))

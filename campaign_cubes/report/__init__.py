"""The morning report: Campaign's offer and Message Center reports, from the published aggregates.

`build_report` reads only the two published tables (in one read-only snapshot, so
a publication committing meanwhile cannot mix two versions), draws the charts as
PNG files with matplotlib (Agg, offline) and writes `index.html` beside them:

    <out_dir>/index.html
    <out_dir>/charts/*.png
    <out_dir>/charts/.written-by-report   the charts the last report wrote, one name a line

Only the files named in that list are removed before a new report is drawn: a
PNG someone else put in charts/ stays.

On a Spark target the two aggregates (a few thousand rows each, not the facts)
are first copied from Spark into temporary tables of the same PostgreSQL session
(the orchestrator's, which keeps the run history), so that one set of queries
serves both engines.

`sections` reads the aggregates and draws the charts; the page's markup and prose
are Jinja2 templates in `templates/` (autoescaped), fed the values `html` defines.
"""

from __future__ import annotations

import re
from contextlib import closing
from datetime import date, datetime
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import ISOLATION_LEVEL_REPEATABLE_READ, connection
from psycopg2.extras import execute_values

from campaign_cubes.dbt import target_type
from campaign_cubes.files import write_atomically
from campaign_cubes.report import data, html, sections
from campaign_cubes.report.data import Period, ReportError
from campaign_cubes.report.sections import CHARTS_DIR, Context

__all__ = ["ReportError", "build_report"]

TITLE = "Campaign cubes — offers and Message Center"
NAV = (
    ("offers", "Offer analysis"),
    ("history", "Message Center history"),
    ("service", "Service level"),
    ("processing", "Processing time"),
)


CHARTS_MANIFEST = ".written-by-report"
_CHART_NAME = re.compile(r"[A-Za-z0-9_.-]+\.png")


def _charts_written_before(charts_dir: Path) -> list[Path]:
    """The charts the previous report listed as its own (plain names inside charts/ only)."""
    try:
        names = (charts_dir / CHARTS_MANIFEST).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        return []
    return [charts_dir / name for name in names if _CHART_NAME.fullmatch(name)]


def _clear_charts(out_dir: Path) -> dict[str, tuple[int, int]]:
    """Remove the charts the previous report wrote, so none is left from another period.

    Returns what charts/ then holds (name -> mtime, size), so that the charts this
    report writes can be told from the files it must leave alone.
    """
    charts_dir = out_dir / CHARTS_DIR
    charts_dir.mkdir(parents=True, exist_ok=True)
    for old in _charts_written_before(charts_dir):
        old.unlink(missing_ok=True)
    return _png_stamps(charts_dir)


def _png_stamps(charts_dir: Path) -> dict[str, tuple[int, int]]:
    stamps = {}
    for path in charts_dir.glob("*.png"):
        status = path.stat()
        stamps[path.name] = (status.st_mtime_ns, status.st_size)
    return stamps


def _record_charts(out_dir: Path, before: dict[str, tuple[int, int]]) -> None:
    """List the charts this report wrote (new or rewritten since `before`) for the next one."""
    charts_dir = out_dir / CHARTS_DIR
    written = sorted(name for name, stamp in _png_stamps(charts_dir).items() if before.get(name) != stamp)
    (charts_dir / CHARTS_MANIFEST).write_text("".join(f"{name}\n" for name in written), encoding="utf-8")


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"--out {out_dir} is a file, not a folder")
    charts_dir = out_dir / CHARTS_DIR
    if charts_dir.exists() and not charts_dir.is_dir():
        raise ReportError(f"{charts_dir} is a file, not a folder")
    try:
        charts_dir.mkdir(parents=True, exist_ok=True)
    except OSError as problem:
        raise ReportError(f"cannot create {charts_dir}: {problem.strerror}") from None


def render(ctx: Context, published_schema: str) -> str:
    """The whole page (templates/page.html), drawing the charts into `ctx.out_dir/charts`."""
    by_bucket = (
        data.events_by_bucket(ctx.conn, ctx.schema, ctx.period, ctx.error_statuses) if not ctx.period.empty else []
    )
    return html.render(
        "page.html",
        title=TITLE,
        nav=NAV,
        period=ctx.period,
        schema=published_schema,
        generated=datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        undated_propositions=data.undated_propositions(ctx.conn, ctx.schema),
        undated_events=data.undated_events(ctx.conn, ctx.schema),
        kpis=sections.kpis(ctx, by_bucket),
        sections=[
            sections.offer_section(ctx),
            sections.history_section(ctx, by_bucket),
            sections.service_section(ctx, by_bucket),
            sections.processing_section(ctx),
        ],
    )


# Spark's column types as PostgreSQL's, for the temporary copies of the aggregates
_POSTGRES_TYPES = {
    "date": "date",
    "string": "text",
    "tinyint": "smallint",
    "smallint": "smallint",
    "int": "integer",
    "bigint": "bigint",
    "float": "real",
    "double": "double precision",
    "boolean": "boolean",
    "timestamp": "timestamptz",
}


def _postgres_type(table: str, column: str, spark_type: str) -> str:
    if spark_type.startswith("decimal"):
        return "numeric"
    if spark_type not in _POSTGRES_TYPES:
        raise ReportError(f"{table}.{column} is of Spark type {spark_type}, which the report does not read")
    return _POSTGRES_TYPES[spark_type]


def copy_from_spark(conn: connection, schema: str) -> str:
    """Copy both published aggregates of Spark database `schema` into temporary tables of
    `conn`'s transaction; the schema to read them from (pg_temp)."""
    from campaign_cubes.export import ExportFailed, reading_session, spark_frame

    try:
        with reading_session() as session:
            for table in (data.PROPOSITIONS_TABLE, data.EVENTS_TABLE):
                _copy_frame(conn, table, spark_frame(schema, table, session))
    except ExportFailed as problem:
        raise ReportError(str(problem)) from None
    return "pg_temp"


def _copy_frame(conn: connection, table: str, frame: Any) -> None:
    """Copy Spark DataFrame `frame` into a temporary table `table` of `conn`'s transaction."""
    columns = sql.SQL(", ").join(
        sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(_postgres_type(table, name, kind)))
        for name, kind in frame.dtypes
    )
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("create temporary table {} ({})").format(sql.Identifier(table), columns))
        execute_values(
            cursor,
            sql.SQL("insert into {} values %s").format(sql.Identifier(table)).as_string(cursor),
            [tuple(row) for row in frame.collect()],
        )


def build_report(schema: str, out_dir: Path, date_from: date | None, date_to: date | None) -> Path:
    """Write the report of [date_from, date_to] (inclusive; None: the data's first/last day).

    Connects with libpq's environment (PGHOST, ...). Returns `out_dir/index.html`.
    Raises ReportError for a bad period or missing aggregates.
    """
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    on_spark = target_type() == "spark"
    with closing(psycopg2.connect()) as conn:
        # read-only where it can be: temporary tables need a writable transaction
        conn.set_session(isolation_level=ISOLATION_LEVEL_REPEATABLE_READ, readonly=not on_spark)
        try:
            source = copy_from_spark(conn, schema) if on_spark else schema
            data.check_published(conn, source)
            period: Period = data.resolve_period(conn, source, date_from, date_to)
            before = _clear_charts(out_dir)
            ctx = Context(
                conn=conn, schema=source, period=period, out_dir=out_dir, error_statuses=data.error_statuses()
            )
            try:
                page = render(ctx, schema)
            finally:  # even a report that fails halfway lists what it drew, for the next one to remove
                _record_charts(out_dir, before)
        finally:
            conn.rollback()  # the temporary tables go with it
    return write_atomically(out_dir / "index.html", page)

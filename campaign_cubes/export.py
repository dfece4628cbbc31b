"""`orchestrate.py [--target T] export <aggregate> --out FILE.csv`: a published aggregate as CSV.

The same file from either engine: a header row with the column names, one line
per row sorted on every column (NULL first, text by code point, so no collation
decides), dates in ISO 8601, numbers in plain notation (no exponent, no trailing
zeros, the shortest text that reads back as the same double), NULL as an empty
cell. On PostgreSQL the rows are read with psycopg2; on Spark (session mode) from
a Spark session opened with the profile's settings, so the published view is
read where dbt built it.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import jinja2
import psycopg2
import yaml
from psycopg2 import sql

from campaign_cubes.dbt import profiles_dir, target_type


class ExportFailed(RuntimeError):
    """The aggregate could not be read (not published yet, unreachable engine...)."""


def cell(value: Any) -> str:
    """One CSV cell as the module docstring says."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)  # nan, inf: no plain notation exists
        value = Decimal(repr(value))  # the shortest decimal that reads back as this double
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text in ("-0", "0") else text
    return str(value)


def sort_key(row: Sequence[Any]) -> tuple[tuple[int, Any], ...]:
    """NULL first, then the value (text by code point), whatever the engine's collation."""
    return tuple((0, 0) if value is None else (1, value) for value in row)


def write_csv(out: Path, headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write atomically (a reader never sees half a file); the number of rows written."""
    ordered = sorted(rows, key=sort_key)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    with partial.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(headers)
        writer.writerows([cell(value) for value in row] for row in ordered)
    partial.replace(out)
    return len(ordered)


def postgres_rows(schema: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        with psycopg2.connect() as connection, connection.cursor() as cursor:
            cursor.execute(sql.SQL("select * from {}").format(sql.Identifier(schema, table)))
            headers = [column.name for column in cursor.description or ()]
            return headers, cursor.fetchall()
    except psycopg2.errors.UndefinedTable:
        raise ExportFailed(f"{schema}.{table} does not exist: run the job first") from None


def spark_settings(target_name: str | None = None) -> dict[str, str]:
    """The server_side_parameters of the Spark target (`target_name`, else $DBT_TARGET, else the
    profile's default), each value rendered as dbt renders profiles.yml (only env_var is used there)."""

    def env_var(name: str, default: str | None = None) -> str:
        value = os.environ.get(name, default)
        if value is None:
            raise ExportFailed(f"profiles.yml reads the environment variable {name}, which is not set")
        return value

    environment = jinja2.Environment()
    # dbt's type filters change nothing in a rendered text
    environment.filters.update({name: lambda value: value for name in ("as_number", "as_bool", "as_native")})
    environment.filters["as_text"] = str

    def rendered(value: Any) -> str:
        return environment.from_string(str(value)).render(env_var=env_var)

    profile = yaml.safe_load((profiles_dir() / "profiles.yml").read_text())["campaign_cubes"]
    target = profile["outputs"][target_name or os.environ.get("DBT_TARGET") or profile["target"]]
    method = rendered(target.get("method"))
    if method != "session":
        raise ExportFailed(f"export and report read Spark in session mode only; this target's method is {method}")
    return {str(key): rendered(value) for key, value in (target.get("server_side_parameters") or {}).items()}


def spark_session(target_name: str | None = None) -> Any:
    """A Spark session with the target's settings (session mode: Spark in this process)."""
    from pyspark.sql import SparkSession

    builder = SparkSession.builder.enableHiveSupport()
    for key, value in spark_settings(target_name).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


@contextmanager
def reading_session() -> Iterator[Any]:
    """This process's running Spark session, else one started here and stopped on leaving."""
    from pyspark.sql import SparkSession

    running = SparkSession.getActiveSession()
    session = running or spark_session()
    try:
        yield session
    finally:
        if running is None:
            session.stop()


def spark_frame(schema: str, table: str, session: Any) -> Any:
    """The Spark DataFrame of `schema`.`table`; ExportFailed when it cannot be read."""
    from pyspark.errors import AnalysisException

    try:
        return session.table(f"`{schema}`.`{table}`")
    except AnalysisException as problem:
        first_line = str(problem).splitlines()[0]
        raise ExportFailed(f"{schema}.{table}: {first_line}: build the aggregates first (orchestrate.py run)") from None


def spark_rows(schema: str, table: str, session: Any = None) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The rows of `schema`.`table` read in `session`, else in this process's reading session."""
    if session is None:
        with reading_session() as spark:
            return spark_rows(schema, table, spark)
    frame = spark_frame(schema, table, session)
    return list(frame.columns), [tuple(row) for row in frame.collect()]


def export(aggregate: str, out: Path, schema: str) -> int:
    """Write the published `aggregate` of `schema` to `out`; the number of rows."""
    table = aggregate.lower()  # the Message Center cube is published as agg_messagecenter_full
    reader = spark_rows if target_type() == "spark" else postgres_rows
    headers, rows = reader(schema, table)
    return write_csv(out, headers, rows)

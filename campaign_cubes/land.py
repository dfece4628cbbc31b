"""`orchestrate.py --target spark land`: the Campaign tables copied from PostgreSQL into Spark.

The source is the PostgreSQL the libpq variables point at, or CAMPAIGN_SOURCE_DSN
when set (its password from CAMPAIGN_SOURCE_PASSWORD or a pgpass file), schema
`campaign_schema`; a login with usage and select is enough. This module reads
the catalog and each table's key range there, and writes the query that Spark's
JDBC reader sends; dbt (macros/land.sql) then lands each table as Parquet in the
Spark database `campaign_schema`, read in parallel partitions of the key.

Timestamps travel as epoch microseconds (bigint) and become Spark timestamps on
arrival: exact whatever the calendar or the JVM's zone. PostgreSQL values Spark
cannot hold (infinity, before 0001-01-01 or from 10000-01-01 UTC) arrive as the
first or last microsecond of Spark's range, which the models treat as out of
range like PostgreSQL's own (docs/spark.md).
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.dbt import DbtRun, run_dbt
from campaign_cubes.demo import CAMPAIGN_TABLES

log = logging.getLogger(__name__)

#: The key of each Campaign table: the JDBC reader's partition column.
CAMPAIGN_KEYS: Mapping[str, str] = {
    "nmsoffer": "iofferid",
    "nmsofferspace": "iofferspaceid",
    "nmsdelivery": "ideliveryid",
    "nmspropositionrcp": "ipropositionid",
    "nmseventhisto": "bieventhistoid",
    "nmsrtevent": "irteventid",
    "nmsbatchevent": "ibatcheventid",
}
ROWS_PER_PARTITION = 1_000_000
MAX_PARTITIONS = 256
# Spark's timestamp range, in epoch microseconds: 0001-01-01 and 9999-12-31 23:59:59.999999 UTC.
FIRST_MICROS = -62_135_596_800_000_000
LAST_MICROS = 253_402_300_799_999_999
WORK_DIR = PROJECT_ROOT / "target" / "land"


class LandingRefused(RuntimeError):
    """The source cannot be landed as configured (no such schema, a socket host, ...)."""


@dataclass(frozen=True)
class LandedTable:
    """One Campaign table as macros/land.sql lands it."""

    name: str
    key: str
    query: str  # the PostgreSQL query the JDBC reader sends (its partitions add their key range)
    columns: list[str]
    instants: list[str]  # timestamptz columns, sent as epoch microseconds
    wall_times: list[str]  # timestamp (without time zone) columns, idem
    lower: int
    upper: int
    partitions: int
    rows: int


def source_connection() -> connection:
    """The Campaign source: CAMPAIGN_SOURCE_DSN when set, else the libpq variables."""
    dsn = os.environ.get("CAMPAIGN_SOURCE_DSN", "").strip()
    password = os.environ.get("CAMPAIGN_SOURCE_PASSWORD")
    if dsn and password:
        return psycopg2.connect(dsn, password=password)
    return psycopg2.connect(dsn)


def jdbc_url(conn: connection) -> str:
    """The JDBC URL of the server `conn` is connected to (TCP only: Java has no Unix sockets here)."""
    host, port, dbname = conn.info.host, conn.info.port, conn.info.dbname
    if host.startswith("/"):
        raise LandingRefused(
            f"the source is reached through the Unix socket {host}; Spark's JDBC reader needs a TCP host "
            "(set PGHOST, or host= in CAMPAIGN_SOURCE_DSN)"
        )
    return f"jdbc:postgresql://{host}:{port}/{dbname}"


def table_columns(conn: connection, schema: str, table: str) -> list[tuple[str, str]]:
    with conn.cursor() as cursor:
        cursor.execute(
            "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute as a"
            " where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped order by a.attnum",
            (sql.Identifier(schema, table).as_string(conn),),
        )
        return [(str(name), str(data_type)) for name, data_type in cursor.fetchall()]


def epoch_micros(column: str) -> sql.Composable:
    """A timestamp as epoch microseconds, clamped to Spark's range (infinities included)."""
    name = sql.Identifier(column)
    return sql.SQL(
        "case when {c} is null then null"
        " when extract(epoch from {c}) * 1000000 < {first} then {first}"
        " when extract(epoch from {c}) * 1000000 > {last} then {last}"
        " else (extract(epoch from {c}) * 1000000)::bigint end"
    ).format(c=name, first=sql.Literal(FIRST_MICROS), last=sql.Literal(LAST_MICROS))


def describe_table(conn: connection, schema: str, table: str) -> LandedTable | None:
    """What landing `table` takes, or None when the source has no such table."""
    columns = table_columns(conn, schema, table)
    if not columns:
        return None
    key = CAMPAIGN_KEYS[table]
    instants = [name for name, data_type in columns if data_type == "timestamp with time zone"]
    wall_times = [name for name, data_type in columns if data_type == "timestamp without time zone"]
    selected = [
        sql.SQL("{} as {}").format(epoch_micros(name), sql.Identifier(name))
        if name in instants or name in wall_times
        else sql.Identifier(name)
        for name, _ in columns
    ]
    relation = sql.Identifier(schema, table)
    query = sql.SQL("select {} from {}").format(sql.SQL(", ").join(selected), relation)
    with conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("select count(*), coalesce(min({k}), 0), coalesce(max({k}), 0) from {t}").format(
                k=sql.Identifier(key), t=relation
            )
        )
        rows, lower, upper = cursor.fetchone() or (0, 0, 0)
    partitions = max(1, min(MAX_PARTITIONS, int(rows) // ROWS_PER_PARTITION, int(upper) - int(lower) + 1))
    return LandedTable(
        name=table,
        key=key,
        query=query.as_string(conn),
        columns=[name for name, _ in columns],
        instants=instants,
        wall_times=wall_times,
        lower=int(lower),
        upper=int(upper),
        partitions=partitions,
        rows=int(rows),
    )


def describe_source(conn: connection, schema: str) -> list[LandedTable]:
    with conn.cursor() as cursor:
        cursor.execute("select 1 from pg_namespace where nspname = %s", (schema,))
        if cursor.fetchone() is None:
            raise LandingRefused(f"the source database has no schema {schema!r} (var campaign_schema)")
    tables = [table for name in CAMPAIGN_TABLES if (table := describe_table(conn, schema, name)) is not None]
    if not any(table.name == "nmspropositionrcp" for table in tables):
        raise LandingRefused(f"schema {schema!r} of the source has no nmspropositionrcp: not Campaign tables")
    return tables


@contextmanager
def password_file(conn: connection) -> Iterator[dict[str, str]]:
    """The environment that gives the JDBC driver the source's password: a pgpass file of
    this landing only (mode 0600, removed afterwards), never the SQL text dbt logs."""
    dsn_set = bool(os.environ.get("CAMPAIGN_SOURCE_DSN", "").strip())
    password = os.environ.get("CAMPAIGN_SOURCE_PASSWORD" if dsn_set else "PGPASSWORD")
    if not password:
        yield {}  # trust, or the user's own ~/.pgpass (which pgjdbc reads as libpq does)
        return
    escaped = [value.replace("\\", "\\\\").replace(":", "\\:") for value in (conn.info.user, password)]
    with tempfile.TemporaryDirectory(prefix="cubes-land-") as folder:
        path = Path(folder) / "pgpass"
        path.touch(mode=stat.S_IRUSR | stat.S_IWUSR)
        path.write_text(f"*:*:*:{escaped[0]}:{escaped[1]}\n")
        yield {"PGPASSFILE": str(path)}


def landing_args(conn: connection, schema: str) -> list[str]:
    """The dbt arguments that land every Campaign table of `schema` the source has."""
    tables = describe_source(conn, schema)
    source: dict[str, Any] = {"url": jdbc_url(conn), "user": conn.info.user}
    conn.rollback()  # the catalog was read; Spark's own connections read the rows
    for table in tables:
        log.info("land: %s: %d rows, %d partitions on %s", table.name, table.rows, table.partitions, table.key)
    args = json.dumps({"source": source, "tables": [asdict(table) for table in tables]})
    return ["run-operation", "land_campaign_tables", "--args", args]


def land(schema: str, dbt_vars: str | None) -> DbtRun:
    """Land every Campaign table the source has; the dbt run says how it went."""
    conn = source_connection()
    try:
        conn.set_session(readonly=True)
        dbt_args = landing_args(conn, schema)
        with password_file(conn) as env:
            return run_dbt([*dbt_args, "--vars", dbt_vars] if dbt_vars else dbt_args, env=env, work_dir=WORK_DIR)
    finally:
        conn.close()

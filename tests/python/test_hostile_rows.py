"""Hostile Campaign rows never block publication and are never lost.

The demo data, in a schema of its own, gets rows no report can show: infinite and
out-of-range timestamps, years 1 and 9999, NaN and infinite weights, the largest
keys, a row without a key. `dbt build` must still publish both cubes, count every
row (the NULL-date member holds the undatable ones), equal the independent oracle
(reference.py) cell by cell, name each bad column with its count in the log, and
the report must be built from the result.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql

import reference
from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import load_demo
from conftest import TEST_DEMO_SIZE, TEST_SCHEMA_PREFIX
from support import CubesBuild

ROOT = Path(__file__).resolve().parents[2]
SOURCE = f"{TEST_SCHEMA_PREFIX}_badrows_campaign"
SCHEMA = f"{TEST_SCHEMA_PREFIX}_badrows"
BIGINT_MAX = 2**63 - 1
INT_MAX = 2**31 - 1

# (key, tsevent, dweight): every kind of value the cubes cannot use as it is
PROPOSITIONS = [
    (9_000_000_001, "infinity", 1.0),
    (9_000_000_002, "-infinity", "NaN"),
    (9_000_000_003, "0001-01-01 00:00:00+00", "Infinity"),
    (9_000_000_004, "9999-12-31 23:59:59+00", "-Infinity"),
    (9_000_000_005, "294276-12-31 00:00:00+00", 1e308),
    (9_000_000_006, "4713-01-01 00:00:00+00 BC", 1e308),
    (BIGINT_MAX, "2026-06-01 12:00:00+00", 2.5),
    (None, "infinity", "NaN"),
]
# (key, tscreated, tsprocessed)
EVENTS = [
    (9_000_000_001, "infinity", "infinity"),
    (9_000_000_002, "-infinity", "2026-01-01 00:00:00+00"),
    (9_000_000_003, "2026-01-01 00:00:00+00", "infinity"),
    (9_000_000_004, "0001-01-01 00:00:00+00", "0001-01-01 00:00:07+00"),
    (9_000_000_005, "9999-12-31 23:00:00+00", "294276-12-31 00:00:00+00"),
    (9_000_000_006, "4713-01-01 00:00:00+00 BC", "-infinity"),
    (BIGINT_MAX, "2026-06-01 12:00:00+00", "2026-06-01 12:00:09+00"),
    (None, "294276-12-31 00:00:00+00", None),
]


def _insert_hostile_rows(pg_conn: Any, schema: str) -> None:
    with pg_conn.cursor() as cursor:
        for key, tsevent, weight in PROPOSITIONS:
            cursor.execute(
                sql.SQL(
                    "insert into {} (ipropositionid, iofferid, iofferspaceid, irecipientid, ideliveryid,"
                    " istatus, tsevent, tslastmodified, dweight, irank)"
                    " values (%s, %s, %s, %s, %s, 1, %s, 'infinity', %s::double precision, %s)"
                ).format(sql.Identifier(schema, "nmspropositionrcp")),
                (key, INT_MAX, INT_MAX, INT_MAX, INT_MAX, tsevent, str(weight), 32767),
            )
        for key, created, processed in EVENTS:
            cursor.execute(
                sql.SQL(
                    "insert into {} (bieventhistoid, stype, istatus, iwishedchannel, ideliveryid,"
                    " tscreated, tsprocessed, tslastmodified)"
                    " values (%s, 'HOSTILE', 32767, 32767, %s, %s, %s, '-infinity')"
                ).format(sql.Identifier(schema, "nmseventhisto")),
                (key, INT_MAX, created, processed),
            )


@pytest.fixture(scope="module")
def hostile_source(pg_conn: Any) -> str:
    load_demo(pg_conn, SOURCE, TEST_DEMO_SIZE, seed=11)
    _insert_hostile_rows(pg_conn, SOURCE)
    return SOURCE


@pytest.fixture(scope="module")
def hostile_build(run_cubes: Callable[..., DbtRun], hostile_source: str) -> CubesBuild:
    dbt_vars = {"campaign_schema": hostile_source, "reporting_timezone": "UTC", "message_center_source": "eventhisto"}
    run = run_cubes(["build"], dbt_vars, schema=SCHEMA)
    return CubesBuild(
        schema=SCHEMA, source_schema=hostile_source, timezone="UTC", mode="eventhisto", run=run, vars=dbt_vars
    )


def _one(pg_conn: Any, query: str, *identifiers: str) -> Any:
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL(query).format(*(sql.Identifier(*name.split(".")) for name in identifiers)))
        return cursor.fetchone()[0]


# Counted from the Campaign table alone: distinct keys but the placeholder, and each keyless row.
DISTINCT_FACTS = (
    "select count(distinct {key}) filter (where {key} <> 0) + count(*) filter (where {key} is null) from {}"
)


def _undatable(text: str | None) -> bool:
    """No date in UTC: NULL, infinite, before year 1 or after 9999."""
    return text is None or text in ("infinity", "-infinity") or text.endswith(" BC") or len(text.split("-")[0]) > 4


def test_publication_succeeds(hostile_build: CubesBuild) -> None:
    assert hostile_build.run.exit_code == 0, [r.message for r in hostile_build.run.broken]
    assert not hostile_build.run.failed


@pytest.mark.parametrize(
    ("table", "key", "cube", "measure", "day", "hostile_group", "stamps"),
    [
        (
            "nmspropositionrcp",
            "ipropositionid",
            "agg_nmspropositionrcp_full",
            "propositions",
            "proposition_date",
            f"channel_code = -1 and delivery_id = {INT_MAX} and offer_id = {INT_MAX}",
            [ts for _, ts, _ in PROPOSITIONS],
        ),
        (
            "nmseventhisto",
            "bieventhistoid",
            "agg_messagecenter_full",
            "events",
            "event_date",
            "channel_code = 32767 and status_code = 32767 and event_type = 'HOSTILE'",
            [ts for _, ts, _ in EVENTS],
        ),
    ],
)
def test_every_row_is_counted_and_undatable_ones_have_no_date(
    hostile_build: CubesBuild,
    pg_conn: Any,
    table: str,
    key: str,
    cube: str,
    measure: str,
    day: str,
    hostile_group: str,
    stamps: list[str | None],
) -> None:
    source, published = f"{hostile_build.source_schema}.{table}", f"{hostile_build.schema}.{cube}"
    facts = _one(pg_conn, DISTINCT_FACTS.replace("{key}", key), source)
    assert _one(pg_conn, f"select sum({measure}) from {{}}", published) == facts
    undated = sum(1 for stamp in stamps if _undatable(stamp))
    assert undated >= 4
    assert (
        _one(pg_conn, f"select sum({measure}) from {{}} where {hostile_group} and {day} is null", published) == undated
    )
    assert (
        _one(pg_conn, f"select sum({measure}) from {{}} where {hostile_group} and {day} is not null", published)
        == len(stamps) - undated
    )
    # years 1 and 9999 are dates like any other
    assert (
        _one(
            pg_conn,
            f"select count(*) from {{}} where {hostile_group} and {day} in ('0001-01-01', '9999-12-31')",
            published,
        )
        == 2
    )
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "select outcome, candidate_total, fact_rows from {} where lower(model) = %s"
                " order by recorded_at desc limit 1"
            ).format(sql.Identifier(f"{hostile_build.schema}_audit", "publication_log")),
            (cube,),
        )
        assert cursor.fetchone() == ("published", facts, facts)


def test_weights_that_are_not_finite_are_left_out(hostile_build: CubesBuild, pg_conn: Any) -> None:
    published = f"{hostile_build.schema}.agg_nmspropositionrcp_full"
    assert (
        _one(pg_conn, "select count(*) from {} where total_weight = 'NaN' or abs(total_weight) = 'Infinity'", published)
        == 0
    )
    # the hostile rows (offer int max): only 1.0 (undated) and 2.5 (dated) are usable weights
    hostile = f"offer_id = {INT_MAX}"
    undated = f"select total_weight from {{}} where {hostile} and proposition_date is null"
    assert _one(pg_conn, undated, published) == 1.0
    assert _one(pg_conn, f"select sum(total_weight) from {{}} where {hostile}", published) == 3.5


def test_both_cubes_equal_the_oracle(hostile_build: CubesBuild, pg_conn: Any) -> None:
    build = hostile_build
    problems = reference.differences(
        reference.propositions_cube(pg_conn, build.source_schema, build.timezone),
        reference.published(
            pg_conn,
            build.schema,
            "agg_nmspropositionrcp_full",
            ("proposition_date", "channel_code", "delivery_id", "offer_id"),
        ),
    )
    problems += reference.differences(
        reference.message_center_cube(pg_conn, build.source_schema, build.timezone, build.mode),
        reference.published(
            pg_conn, build.schema, "agg_messagecenter_full", ("event_date", "channel_code", "status_code", "event_type")
        ),
    )
    assert not problems, problems[:20]


def _out_of_range_in_table(pg_conn: Any, table: str, condition: str) -> int:
    return int(_one(pg_conn, f"select count(*) from {{}} where {condition}", table))


def test_the_log_names_each_column_and_its_count(hostile_build: CubesBuild, pg_conn: Any) -> None:
    log = hostile_build.run.log_file.read_text()
    source = hostile_build.source_schema
    outside = "not ({0} >= '0001-01-01 00:00:00+00' and {0} < '10000-01-01 00:00:00+00')"
    expected = {
        "nmspropositionrcp.tsevent": ("no date", f"{source}.nmspropositionrcp", outside.format("tsevent")),
        "nmspropositionrcp.dweight": (
            "no weight",
            f"{source}.nmspropositionrcp",
            "dweight = 'NaN' or abs(dweight) >= 1e300",
        ),
        "nmseventhisto.tscreated": ("no date", f"{source}.nmseventhisto", outside.format("tscreated")),
        "nmseventhisto.tsprocessed": ("no processing time", f"{source}.nmseventhisto", outside.format("tsprocessed")),
    }
    for column, (member, table, condition) in expected.items():
        count = _out_of_range_in_table(pg_conn, table, condition)
        assert count > 0
        line = f"campaign-cubes: {column}: {count} rows not finite or out of range, counted with {member}"
        assert line in log, f"{line!r} not in the log"
    warned = {result.unique_id.split(".")[2] for result in hostile_build.run.warned}
    assert {"campaign_nmspropositionrcp_values_out_of_range", "campaign_nmseventhisto_values_out_of_range"} <= warned


def test_the_orchestrator_shows_the_counts_as_warnings(hostile_source: str) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "orchestrate.py"),
            "run",
            "agg_messageCenter_full",
            "--vars",
            json.dumps({"campaign_schema": hostile_source}),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CAMPAIGN_CUBES_SCHEMA": f"{TEST_SCHEMA_PREFIX}_hostile_orchestrated"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(
        r"WARNING .*nmseventhisto\.tsprocessed: \d+ rows not finite or out of range, "
        r"counted with no processing time",
        done.stdout,
    ), done.stdout


def test_the_report_is_built_from_years_1_to_9999(hostile_build: CubesBuild, tmp_path: Path) -> None:
    assert hostile_build.run.exit_code == 0
    done = subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), "report", "--out", str(tmp_path / "report")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CAMPAIGN_CUBES_SCHEMA": hostile_build.schema},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "1 Jan 1 – 31 Dec 9999" in page  # the period: the first and last days the aggregates hold
    assert list((tmp_path / "report" / "charts").glob("*.png"))


# --- Campaign's local-time storage (var campaign_database_timezone) -----------------

STORAGE_ZONE = "Europe/Paris"
LOCAL_SOURCE = f"{TEST_SCHEMA_PREFIX}_localtime_campaign"
GRAINS = {
    "agg_nmspropositionrcp_full": ("proposition_date", "channel_code", "delivery_id", "offer_id"),
    "agg_messagecenter_full": ("event_date", "channel_code", "status_code", "event_type"),
}


@pytest.fixture(scope="module")
def local_time_source(pg_conn: Any) -> str:
    """The demo data of demo_source, every timestamp column stored as wall-clock time in Paris."""
    load_demo(pg_conn, LOCAL_SOURCE, TEST_DEMO_SIZE, seed=11)
    with pg_conn.cursor() as cursor:
        cursor.execute(
            "select table_name, column_name from information_schema.columns"
            " where table_schema = %s and data_type = 'timestamp with time zone'",
            (LOCAL_SOURCE,),
        )
        columns = cursor.fetchall()
        assert len(columns) >= 7
        for table, column in columns:
            cursor.execute(
                sql.SQL("alter table {} alter column {} type timestamp using {} at time zone {}").format(
                    sql.Identifier(LOCAL_SOURCE, table),
                    sql.Identifier(column),
                    sql.Identifier(column),
                    sql.Literal(STORAGE_ZONE),
                )
            )
    return LOCAL_SOURCE


def test_local_time_storage_equals_the_timestamptz_build(
    run_cubes: Callable[..., DbtRun],
    local_time_source: str,
    default_build: CubesBuild,
    pg_conn: Any,
) -> None:
    schema = f"{TEST_SCHEMA_PREFIX}_localtime"
    dbt_vars = {**default_build.vars, "campaign_schema": local_time_source, "campaign_database_timezone": STORAGE_ZONE}
    run = run_cubes(["build"], dbt_vars, schema=schema)
    assert run.exit_code == 0, [r.message for r in run.broken]
    for table, grain in GRAINS.items():
        problems = reference.differences(
            reference.published(pg_conn, default_build.schema, table, grain),
            reference.published(pg_conn, schema, table, grain),
        )
        assert not problems, problems[:20]
    # and the oracle, reading the wall-clock times in Paris, agrees
    problems = reference.differences(
        reference.message_center_cube(pg_conn, local_time_source, "UTC", "eventhisto", STORAGE_ZONE),
        reference.published(pg_conn, schema, "agg_messagecenter_full", GRAINS["agg_messagecenter_full"]),
    )
    problems += reference.differences(
        reference.propositions_cube(pg_conn, local_time_source, "UTC", STORAGE_ZONE),
        reference.published(pg_conn, schema, "agg_nmspropositionrcp_full", GRAINS["agg_nmspropositionrcp_full"]),
    )
    assert not problems, problems[:20]


def test_local_time_storage_without_the_zone_stops_the_build(
    run_cubes: Callable[..., DbtRun],
    local_time_source: str,
    pg_conn: Any,
) -> None:
    schema = f"{TEST_SCHEMA_PREFIX}_localtime_unset"
    run = run_cubes(["build"], {"campaign_schema": local_time_source}, schema=schema)
    assert run.exit_code != 0
    log = run.log_file.read_text()
    assert "set var campaign_database_timezone" in log, log[-3000:]
    with pg_conn.cursor() as cursor:  # nothing published
        cursor.execute(
            "select count(*) from pg_class join pg_namespace on pg_namespace.oid = relnamespace where nspname = %s",
            (schema,),
        )
        assert cursor.fetchone()[0] == 0

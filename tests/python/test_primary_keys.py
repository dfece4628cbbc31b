"""Fact tables keyed as Campaign keys them: the key pass skips its sort, and the cells stay right.

On a table with a unique index or primary key on its key, no key can repeat: the
publication counts its rows without sorting the keys (macros/repeated_keys.sql).
The published cubes must still equal the independent reference, cell by cell, in
both Message Center modes; and a table whose index does not guarantee unique keys
must still be deduplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from psycopg2 import sql

import reference
from bench.run import add_primary_keys
from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import load_demo
from conftest import TEST_DEMO_SIZE, TEST_SCHEMA_PREFIX
from support import CubesBuild, copy_campaign_tables

pytestmark = pytest.mark.slow

PROPOSITIONS_GRAIN = ("proposition_date", "channel_code", "delivery_id", "offer_id")
MESSAGE_CENTER_GRAIN = ("event_date", "channel_code", "status_code", "event_type")
FAST_PATH = "no key can repeat, its rows are counted without a key sort"


def _run(pg_conn: Any, statement: str, schema: str) -> None:
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL(statement).format(s=sql.Identifier(schema)))


@pytest.fixture(scope="module")
def keyed_source(pg_conn: Any) -> str:
    """The demo data with unique keys: a unique index on the propositions' key (which,
    unlike a primary key, admits rows without a key: two are added), primary keys on
    the event tables."""
    schema = f"{TEST_SCHEMA_PREFIX}_campaign_keyed"
    load_demo(pg_conn, schema, TEST_DEMO_SIZE, seed=11)
    add_primary_keys(pg_conn, schema)
    _run(pg_conn, "alter table {s}.nmspropositionrcp alter column ipropositionid drop not null", schema)
    for _ in range(2):
        _run(
            pg_conn,
            "insert into {s}.nmspropositionrcp select null, iinteractionid, iofferid, iofferspaceid, irecipientid,"
            " ideliveryid, istatus, tsevent, tslastmodified, dweight, irank"
            " from {s}.nmspropositionrcp where ipropositionid = 10",
            schema,
        )
    return schema


@pytest.fixture(scope="module")
def keyed_builds(run_cubes: Callable[..., DbtRun], keyed_source: str) -> list[CubesBuild]:
    builds = []
    for schema, timezone, mode in (
        (f"{TEST_SCHEMA_PREFIX}_keyed", "UTC", "eventhisto"),
        (f"{TEST_SCHEMA_PREFIX}_keyed_execution", "America/New_York", "execution"),
    ):
        dbt_vars = {"campaign_schema": keyed_source, "reporting_timezone": timezone, "message_center_source": mode}
        run = run_cubes(["build", "--exclude", "test_type:unit"], dbt_vars, schema=schema)
        builds.append(
            CubesBuild(schema=schema, source_schema=keyed_source, timezone=timezone, mode=mode, run=run, vars=dbt_vars)
        )
    return builds


def _matches_reference(pg_conn: Any, build: CubesBuild) -> None:
    log = build.run.log_file.read_text()
    assert build.run.ok, log[-4000:]
    expected = reference.propositions_cube(pg_conn, build.source_schema, build.timezone)
    actual = reference.published(pg_conn, build.schema, "agg_nmspropositionrcp_full", PROPOSITIONS_GRAIN)
    problems = reference.differences(expected, actual)
    assert not problems, f"{len(problems)} cells differ, e.g.:\n" + "\n".join(problems[:20])
    expected = reference.message_center_cube(pg_conn, build.source_schema, build.timezone, build.mode)
    actual = reference.published(pg_conn, build.schema, "agg_messagecenter_full", MESSAGE_CENTER_GRAIN)
    problems = reference.differences(expected, actual)
    assert not problems, f"{len(problems)} cells differ, e.g.:\n" + "\n".join(problems[:20])
    assert len(actual) > 100


def test_unique_keys_skip_the_key_sort_and_match_the_reference(keyed_builds: list[CubesBuild], pg_conn: Any) -> None:
    for build in keyed_builds:
        _matches_reference(pg_conn, build)
        events = ["nmseventhisto"] if build.mode == "eventhisto" else ["nmsrtevent", "nmsbatchevent"]
        log = build.run.log_file.read_text()
        for table in ["nmspropositionrcp", *events]:
            assert f"{table} has a unique index on" in log and FAST_PATH in log, table


def test_an_index_that_does_not_make_keys_unique_still_deduplicates(
    run_cubes: Callable[..., DbtRun], demo_source: str, scratch_schema: str, pg_conn: Any
) -> None:
    # the demo's duplicated keys, under indexes that do not rule them out
    copy_campaign_tables(pg_conn, demo_source, scratch_schema)
    for index in (
        "create index on {s}.nmspropositionrcp (ipropositionid)",
        "create unique index on {s}.nmspropositionrcp (ipropositionid) where ipropositionid < 0",
        "create unique index on {s}.nmseventhisto (bieventhistoid, tscreated, tslastmodified, istatus, stype)",
    ):
        _run(pg_conn, index, scratch_schema)
    schema = f"{TEST_SCHEMA_PREFIX}_not_unique"
    dbt_vars = {"campaign_schema": scratch_schema, "reporting_timezone": "UTC", "message_center_source": "eventhisto"}
    run = run_cubes(["build", "--exclude", "test_type:unit"], dbt_vars, schema=schema)
    build = CubesBuild(schema=schema, source_schema=scratch_schema, timezone="UTC", mode="eventhisto", run=run)
    _matches_reference(pg_conn, build)
    assert FAST_PATH not in run.log_file.read_text()
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("select count(*) from {}").format(
                sql.Identifier(f"{schema}_staging", "base_campaign__proposition_repeated_keys")
            )
        )
        assert cursor.fetchone()[0] > 0  # the key sort found the repeated keys

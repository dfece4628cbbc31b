"""The dbt project on a real PostgreSQL: build, compare with the reference, settings, docs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import reference
from campaign_cubes.dbt import DbtRun
from campaign_cubes.jobs import project_messages
from support import CubesBuild, copy_campaign_tables

pytestmark = pytest.mark.slow

PROPOSITIONS_GRAIN = ("proposition_date", "channel_code", "delivery_id", "offer_id")
MESSAGE_CENTER_GRAIN = ("event_date", "channel_code", "status_code", "event_type")


def explain(run: DbtRun) -> str:
    failed = "\n".join(f"{node.status} {node.name}: {node.message}" for node in run.failed)
    return f"dbt exit {run.exit_code}\n{failed}\n{run.log_file.read_text()[-4000:]}"


def test_build_succeeds_with_warnings_only(default_build: CubesBuild) -> None:
    assert default_build.run.ok, explain(default_build.run)
    statuses = default_build.run.status_counts()
    assert statuses.get("pass", 0) > 30 and "error" not in statuses and "fail" not in statuses


def test_unit_tests_ran(default_build: CubesBuild) -> None:
    unit = [node for node in default_build.run.results if node.unique_id.startswith("unit_test.")]
    assert len(unit) >= 9 and all(node.status == "pass" for node in unit)


@pytest.mark.parametrize("build_name", ["default_build", "execution_build"])
def test_message_center_matches_reference(build_name: str, request: pytest.FixtureRequest, pg_conn: Any) -> None:
    build: CubesBuild = request.getfixturevalue(build_name)
    assert build.run.ok, explain(build.run)
    expected = reference.message_center_cube(pg_conn, build.source_schema, build.timezone, build.mode)
    actual = reference.published(pg_conn, build.schema, "agg_messagecenter_full", MESSAGE_CENTER_GRAIN)
    problems = reference.differences(expected, actual)
    assert not problems, f"{len(problems)} cells differ, e.g.:\n" + "\n".join(problems[:20])
    assert len(actual) > 100


@pytest.mark.parametrize("build_name", ["default_build", "execution_build"])
def test_propositions_match_reference(build_name: str, request: pytest.FixtureRequest, pg_conn: Any) -> None:
    build: CubesBuild = request.getfixturevalue(build_name)
    assert build.run.ok, explain(build.run)
    expected = reference.propositions_cube(pg_conn, build.source_schema, build.timezone)
    actual = reference.published(pg_conn, build.schema, "agg_nmspropositionrcp_full", PROPOSITIONS_GRAIN)
    problems = reference.differences(expected, actual)
    assert not problems, f"{len(problems)} cells differ, e.g.:\n" + "\n".join(problems[:20])
    assert len(actual) > 100


def test_totals_equal_deduplicated_source_rows(default_build: CubesBuild, pg_conn: Any) -> None:
    with pg_conn.cursor() as cursor:
        cursor.execute(f"""
            select
                (select sum(propositions) from {default_build.schema}.agg_nmspropositionrcp_full),
                (select count(distinct ipropositionid) from {default_build.source_schema}.nmspropositionrcp
                 where ipropositionid <> 0)
                + (select count(*) from {default_build.source_schema}.nmspropositionrcp where ipropositionid is null)
        """)
        published, source_rows = cursor.fetchone()
    assert published == source_rows


def staging_definition(pg_conn: Any, schema: str, view: str) -> str:
    with pg_conn.cursor() as cursor:
        cursor.execute("select pg_get_viewdef(%s::regclass)", (f"{schema}_staging.{view}",))
        (definition,) = cursor.fetchone()
    return str(definition)


def test_repeated_keys_copies_are_read_in_one_worker(default_build: CubesBuild, pg_conn: Any) -> None:
    # what lets the aggregates run in parallel (one_worker_scan, macros/staging.sql)
    for view in ("stg_campaign__propositions", "stg_campaign__event_history"):
        assert "TABLESAMPLE system (100)" in staging_definition(pg_conn, default_build.schema, view)


def test_a_campaign_schema_of_views_is_read_plainly(
    run_cubes: Any, demo_source: str, scratch_schema: str, pg_conn: Any
) -> None:
    # Only tables can be sampled; a Campaign exposed through views must build all the same.
    copy_campaign_tables(pg_conn, demo_source, scratch_schema, kind="view")
    schema = "cubes_test_views"
    run = run_cubes(["build", "--exclude", "test_type:unit"], {"campaign_schema": scratch_schema}, schema=schema)
    assert run.ok, explain(run)
    assert "TABLESAMPLE" not in staging_definition(pg_conn, schema, "stg_campaign__propositions")
    expected = reference.propositions_cube(pg_conn, demo_source, "UTC")
    actual = reference.published(pg_conn, schema, "agg_nmspropositionrcp_full", PROPOSITIONS_GRAIN)
    assert not reference.differences(expected, actual)
    expected = reference.message_center_cube(pg_conn, demo_source, "UTC", "eventhisto")
    actual = reference.published(pg_conn, schema, "agg_messagecenter_full", MESSAGE_CENTER_GRAIN)
    assert not reference.differences(expected, actual)


def test_unknown_codes_are_named_by_warnings(default_build: CubesBuild) -> None:
    warned = {node.name for node in default_build.run.warned}
    assert {
        "agg_messagecenter_full_unlisted_status_codes",
        "agg_messagecenter_full_unlisted_channel_codes",
        "agg_nmspropositionrcp_full_unlisted_channel_codes",
        "campaign_nmspropositionrcp_unlisted_status_codes",
    } <= warned
    log = default_build.run.log_file.read_text()
    assert "agg_messagecenter_full.status_code has codes not in its seed: 57" in log
    assert "agg_nmspropositionrcp_full.channel_code has codes not in its seed: 57" in log
    assert "nmspropositionrcp.istatus has codes missing from campaign_proposition_statuses: 7" in log


def test_the_project_warns_only_about_the_data(default_build: CubesBuild) -> None:
    # orchestrate.py reports every "campaign-cubes:" message as a warning; a normal
    # nightly run (here, the demo data) may only name unlisted codes
    messages = project_messages(default_build.run.log_file)
    assert messages and all(" has codes " in message for message in messages), messages


def test_published_tables_are_lower_case_with_contract_types(default_build: CubesBuild, pg_conn: Any) -> None:
    with pg_conn.cursor() as cursor:
        cursor.execute(
            "select table_name, column_name, data_type from information_schema.columns "
            "where table_schema = %s order by table_name, ordinal_position",
            (default_build.schema,),
        )
        columns = cursor.fetchall()
    tables = {table for table, _, _ in columns}
    assert tables == {"agg_messagecenter_full", "agg_nmspropositionrcp_full"}
    types = {(table, column): kind for table, column, kind in columns}
    assert types[("agg_nmspropositionrcp_full", "acceptance_rate")] == "numeric"
    assert types[("agg_nmspropositionrcp_full", "channel_code")] == "smallint"
    assert types[("agg_messagecenter_full", "avg_processing_seconds")] == "double precision"
    assert types[("agg_messagecenter_full", "event_year")] == "integer"


@pytest.mark.parametrize(
    ("dbt_vars", "message"),
    [
        ({"reporting_timezone": "Mars/Olympus_Mons"}, "var reporting_timezone is 'Mars/Olympus_Mons'"),
        ({"message_center_source": "both"}, "var message_center_source is 'both'; expected 'eventhisto'"),
        ({"campaign_schema": "no_such_schema"}, "var campaign_schema is 'no_such_schema', but database"),
    ],
)
def test_bad_settings_fail_with_a_clear_message(run_cubes: Any, dbt_vars: dict[str, str], message: str) -> None:
    run = run_cubes(["run", "--select", "agg_messageCenter_full"], dbt_vars, schema="cubes_test_badvars")
    assert run.exit_code != 0
    assert message in run.log_file.read_text()


def test_docs_generate(run_cubes: Any, default_build: CubesBuild, tmp_path: Path) -> None:
    run = run_cubes(["docs", "generate"], default_build.vars, schema=default_build.schema)
    assert run.exit_code == 0, run.log_file.read_text()[-3000:]
    catalog = json.loads((run.log_file.parent.parent / "target" / "catalog.json").read_text())
    published = {node["metadata"]["name"] for node in catalog["nodes"].values()}
    assert {"agg_messagecenter_full", "agg_nmspropositionrcp_full"} <= published

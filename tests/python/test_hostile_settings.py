"""Hostile settings: refused before any write, whatever the entry point.

Every setting that needs no database is checked while dbt parses the project
(macros/generate_schema_name.sql, macros/validate_settings.sql), before dbt's own
`create schema`. Each hostile case runs against a real build: it must end with a
one-line error naming the setting, a non-zero exit, the published rows unchanged,
a canary schema intact and no schema created. The positive cases publish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import DemoSize, load_demo
from support import run_cubes as run_cubes_in

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "cubes_test_hostile_campaign"
SCHEMA = "cubes_test_hostile"
CANARY = "cubes_test_hostile_canary"
CUBES = ("agg_messagecenter_full", "agg_nmspropositionrcp_full")
# no reporting role: roles are cluster-wide, and the role cases are refused before any
BASE_VARS: dict[str, Any] = {"campaign_schema": SOURCE, "reporting_role": ""}
# seeds and models, published; the data tests are other modules' business
PUBLISH = ["build", "--exclude-resource-type", "test", "unit_test"]
REFUSED = "campaign-cubes settings refused, nothing was written"
DROP_CANARY = f";drop schema {CANARY} cascade;--"
# 54 bytes: the longest target schema, room left for a 9-byte suffix within 63
LONGEST_SCHEMA = "cubes_test_" + "l" * 43


@dataclass(frozen=True)
class Database:
    """What a refused run must leave exactly as it was."""

    schemas: frozenset[str]
    published: tuple[tuple[int, str], ...]
    canary: tuple[tuple[Any, ...], ...]
    publications: int


def _rows(conn: connection, query: sql.Composable | str, *params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params or None)  # no params: a % is a plain character
        return cursor.fetchall()


def checksum(conn: connection, schema: str, table: str) -> tuple[int, str]:
    """Row count and an md5 over every row's text, in a fixed order."""
    query = sql.SQL(
        "select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {}.{} as t"
    ).format(sql.Identifier(schema), sql.Identifier(table))
    count, digest = _rows(conn, query)[0]
    return int(count), str(digest)


def snapshot(conn: connection) -> Database:
    return Database(
        # without the temporary schemas, which PostgreSQL keeps once a session needed one
        schemas=frozenset(
            name for (name,) in _rows(conn, "select nspname from pg_namespace where nspname not like 'pg\\_%temp\\_%'")
        ),
        published=tuple(checksum(conn, SCHEMA, table) for table in CUBES),
        canary=tuple(_rows(conn, sql.SQL("select * from {}.t order by 1").format(sql.Identifier(CANARY)))),
        publications=int(_rows(conn, f"select count(*) from {SCHEMA}_audit.publication_log")[0][0]),
    )


@pytest.fixture(scope="module")
def built(pg_conn: connection, run_cubes: Callable[..., DbtRun]) -> Database:
    """Both cubes published once with good settings, and a canary schema beside them."""
    load_demo(pg_conn, SOURCE, DemoSize(propositions=600, events=1_200, execution_events=200), seed=13)
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(
                "drop schema if exists {s} cascade; create schema {s}; "
                "create table {s}.t (x int); insert into {s}.t values (42)"
            ).format(s=sql.Identifier(CANARY))
        )
    first = run_cubes(PUBLISH, BASE_VARS, schema=SCHEMA)
    assert first.ok, first.log_file.read_text()[-3000:]
    state = snapshot(pg_conn)
    assert all(count > 0 for count, _ in state.published)
    return state


def assert_refused(output: str, exit_code: int, message: str, before: Database, conn: connection) -> None:
    """A clear error naming the setting, a failed exit, and nothing written since `before`."""
    assert exit_code != 0, output[-3000:]
    assert REFUSED in output, output[-3000:]
    assert message in output, output[-3000:]
    # one line: the message is never spread over the log
    assert any(REFUSED in line and message in line for line in output.splitlines())
    assert snapshot(conn) == before


def ratio(value: Any) -> tuple[dict[str, Any], str, str]:
    return {"publish_min_volume_ratio": value}, SCHEMA, f"var publish_min_volume_ratio is '{value}'"


def lock_timeout(value: Any) -> tuple[dict[str, Any], str, str]:
    return {"publish_lock_timeout": value}, SCHEMA, f"var publish_lock_timeout is '{value}'"


def target_schema(value: str) -> tuple[dict[str, Any], str, str]:
    return {}, value, f"CAMPAIGN_CUBES_SCHEMA (the target schema) is '{value}'"


def setting(name: str, value: Any) -> tuple[dict[str, Any], str, str]:
    return {name: value}, SCHEMA, f"var {name} is '{value}'"


HOSTILE: dict[str, tuple[dict[str, Any], str, str]] = {
    "ratio-abc": ratio("abc"),
    "ratio-comma": ratio("0,5"),
    "ratio-percent": ratio("50%"),
    "ratio-negative": ratio(-1),
    "ratio-above-one": ratio(1.5),
    "ratio-nan": ratio("nan"),
    "ratio-empty": ratio(""),
    "ratio-boolean": ({"publish_min_volume_ratio": True}, SCHEMA, "var publish_min_volume_ratio is 'True' (a boolean)"),
    "lock-zero": lock_timeout("0"),
    "lock-zero-ms": lock_timeout("0ms"),
    "lock-bare-number": lock_timeout(30),
    "lock-abc": lock_timeout("abc"),
    "lock-negative": lock_timeout("-5s"),
    "lock-huge": lock_timeout("99999h"),
    "lock-injection": lock_timeout("1s'; drop schema x; --"),
    "schema-quote": target_schema('cubes_test_h"x'),
    "schema-injection": target_schema("cubes_test_hostile" + DROP_CANARY),
    "schema-60-bytes": target_schema("cubes_test_" + "s" * 49),
    "schema-55-bytes": target_schema("cubes_test_" + "s" * 44),
    "schema-empty": target_schema(""),
    "schema-upper-case": target_schema("Cubes_Test_Hostile"),
    "schema-reserved": target_schema("pg_cubes"),
    "campaign-schema-quote": setting("campaign_schema", 'cubes_test_hostile_campaign"; drop schema x; --'),
    "role-quote": setting("reporting_role", 'reader"; drop schema x; --'),
    "role-pg-monitor": setting("reporting_role", "pg_monitor"),
    "role-public": setting("reporting_role", "public"),
    "role-current-user": setting("reporting_role", "CURRENT_USER"),
    "role-64-bytes": setting("reporting_role", "r" * 64),
    "zone-injection": setting("reporting_timezone", f"UTC'){DROP_CANARY}"),
    "zone-unknown": setting("reporting_timezone", "Not/AZone"),
    "zone-path": setting("reporting_timezone", "../../etc/passwd"),
    "zone-empty": setting("reporting_timezone", ""),
    "database-zone-unknown": setting("campaign_database_timezone", "Europe/Atlantis"),
    "database-zone-injection": setting("campaign_database_timezone", "UTC';select 1;--"),
    "mode-unknown": setting("message_center_source", "x"),
    "mode-injection": setting("message_center_source", "eventhisto' or 'a'='a"),
}

# these cases also run through the other dbt entry points (show runs no on-run-start hook)
EVERY_ENTRY_POINT = ("ratio-abc", "schema-injection", "zone-injection")
SHOW = ["show", "--select", "agg_messageCenter_full", "--limit", "1"]
ENTRY_POINTS = {"build": ["build"], "show": SHOW, "docs": ["docs", "generate"], "seed": ["seed"], "test": ["test"]}


@pytest.mark.parametrize("case", HOSTILE, ids=list(HOSTILE))
def test_dbt_run_refuses_before_any_write(
    case: str,
    built: Database,
    run_cubes: Callable[..., DbtRun],
    pg_conn: connection,
) -> None:
    dbt_vars, schema, message = HOSTILE[case]
    before = snapshot(pg_conn)
    run = run_cubes(["run"], {**BASE_VARS, **dbt_vars}, schema=schema)
    assert_refused(run.log_file.read_text(), run.exit_code, message, before, pg_conn)


@pytest.mark.parametrize("command", ENTRY_POINTS)
@pytest.mark.parametrize("case", EVERY_ENTRY_POINT)
def test_every_dbt_entry_point_refuses(
    case: str,
    command: str,
    built: Database,
    run_cubes: Callable[..., DbtRun],
    pg_conn: connection,
) -> None:
    dbt_vars, schema, message = HOSTILE[case]
    before = snapshot(pg_conn)
    run = run_cubes(ENTRY_POINTS[command], {**BASE_VARS, **dbt_vars}, schema=schema)
    assert_refused(run.log_file.read_text(), run.exit_code, message, before, pg_conn)


@pytest.mark.parametrize("case", ["zone-unknown", "database-zone-unknown", "role-quote", "lock-zero"])
def test_dbt_show_refuses(case: str, built: Database, run_cubes: Callable[..., DbtRun], pg_conn: connection) -> None:
    dbt_vars, schema, message = HOSTILE[case]
    before = snapshot(pg_conn)
    run = run_cubes(SHOW, {**BASE_VARS, **dbt_vars}, schema=schema)
    assert_refused(run.log_file.read_text(), run.exit_code, message, before, pg_conn)


@pytest.mark.parametrize("case", ["ratio-abc", "ratio-percent", "schema-quote", "schema-injection", "schema-60-bytes"])
def test_orchestrate_run_refuses_before_any_write(case: str, built: Database, pg_conn: connection) -> None:
    dbt_vars, schema, message = HOSTILE[case]
    before = snapshot(pg_conn)
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "orchestrate.py"),
            "run",
            "agg_messageCenter_full",
            "--vars",
            json.dumps({**BASE_VARS, **dbt_vars}),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "CAMPAIGN_CUBES_SCHEMA": schema},
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "Traceback" not in output, output
    assert snapshot(pg_conn) == before
    # orchestrate.py may refuse the schema itself, or pass dbt's message on
    assert message in output or "CAMPAIGN_CUBES_SCHEMA" in output, output


def test_partial_parsing_still_checks(
    built: Database,
    pg_conn: connection,
    tmp_path: Path,
) -> None:
    """One target folder, so that dbt may reuse its parse: a changed env var or --vars still gets checked."""
    good = run_cubes_in(["parse"], BASE_VARS, schema=SCHEMA, work_dir=tmp_path)
    assert good.exit_code == 0, good.log_file.read_text()[-3000:]
    assert (tmp_path / "target" / "partial_parse.msgpack").exists()
    before = snapshot(pg_conn)
    for dbt_vars, schema, message in (
        HOSTILE["schema-injection"],
        HOSTILE["ratio-percent"],
        HOSTILE["schema-injection"],
        HOSTILE["zone-injection"],
    ):
        run = run_cubes_in(["run"], {**BASE_VARS, **dbt_vars}, schema=schema, work_dir=tmp_path)
        assert_refused(run.log_file.read_text(), run.exit_code, message, before, pg_conn)
    # and the same good settings reuse the saved parse (the check passed when it was made)
    again = run_cubes_in(["parse"], BASE_VARS, schema=SCHEMA, work_dir=tmp_path)
    assert again.exit_code == 0, again.log_file.read_text()[-3000:]


def last_outcome(conn: connection, model: str) -> str:
    rows = _rows(
        conn,
        f"select outcome from {SCHEMA}_audit.publication_log where model = %s order by recorded_at desc limit 1",
        model,
    )
    return str(rows[0][0])


@pytest.mark.parametrize(
    ("dbt_vars", "lock_timeout_sql"),
    [
        ({"publish_min_volume_ratio": 0}, "'30000ms'"),
        ({"publish_min_volume_ratio": 1}, "'30000ms'"),
        ({"publish_min_volume_ratio": "0.25"}, "'30000ms'"),
        ({"publish_min_volume_ratio": 0.25, "publish_lock_timeout": "500ms"}, "'500ms'"),
        ({"publish_lock_timeout": "1.5s"}, "'1500ms'"),
        ({"publish_lock_timeout": "1h"}, "'3600000ms'"),
    ],
    ids=["ratio-0", "ratio-1", "ratio-text-0.25", "lock-500ms", "lock-1.5s", "lock-1h"],
)
def test_sound_settings_publish(
    dbt_vars: dict[str, Any],
    lock_timeout_sql: str,
    built: Database,
    run_cubes: Callable[..., DbtRun],
    pg_conn: connection,
) -> None:
    run = run_cubes(["run", "--select", "agg_messageCenter_full"], {**BASE_VARS, **dbt_vars}, schema=SCHEMA)
    assert run.ok, run.log_file.read_text()[-3000:]
    assert last_outcome(pg_conn, "agg_messageCenter_full") == "published"
    # same source: the same rows again, every one counted
    assert checksum(pg_conn, SCHEMA, CUBES[0]) == built.published[0]
    # the publication waits for its lock as long as the var says, in milliseconds
    debug_log = (run.log_file.parent / "dbt.log").read_text()
    assert f"set local lock_timeout = {lock_timeout_sql}" in debug_log


def test_the_longest_schema_builds_end_to_end(
    built: Database, run_cubes: Callable[..., DbtRun], pg_conn: connection
) -> None:
    assert len(LONGEST_SCHEMA.encode()) == 54
    try:
        run = run_cubes(PUBLISH, BASE_VARS, schema=LONGEST_SCHEMA)
        assert run.ok, run.log_file.read_text()[-3000:]
        created = {
            name
            for (name,) in _rows(
                pg_conn, "select nspname from pg_namespace where nspname like %s", LONGEST_SCHEMA + "%"
            )
        }
        assert created == {LONGEST_SCHEMA, LONGEST_SCHEMA + "_staging", LONGEST_SCHEMA + "_audit"}
        for index, table in enumerate(CUBES):
            assert checksum(pg_conn, LONGEST_SCHEMA, table) == built.published[index]
    finally:
        with pg_conn.cursor() as cursor:
            for suffix in ("", "_staging", "_audit"):
                cursor.execute(
                    sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(LONGEST_SCHEMA + suffix))
                )

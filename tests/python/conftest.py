"""Fixtures: a real PostgreSQL (the project-local one unless PGHOST is set), demo data, dbt builds.

Everything a test creates lives in schemas named cubes_test*, dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection
from support import CubesBuild, run_cubes as run_cubes_in

from campaign_cubes import localpg
from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import DemoSize, load_demo

TEST_SCHEMA_PREFIX = "cubes_test"
# Small enough to build in seconds, large enough for every edge case and many groups.
TEST_DEMO_SIZE = DemoSize(propositions=4_000, events=4_000, execution_events=2_000)


@pytest.fixture(scope="session", autouse=True)
def database() -> dict[str, str]:
    """Point the session (and the dbt and orchestrate.py processes it starts) at the server."""
    env = localpg.connection_env()
    os.environ.update(env)
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    return env


@pytest.fixture(scope="session")
def pg_conn(database: dict[str, str]) -> Iterator[connection]:
    """One autocommit connection for the whole session; drops the test schemas at the end."""
    conn = psycopg2.connect()
    conn.autocommit = True
    yield conn
    with conn.cursor() as cursor:
        cursor.execute("select nspname from pg_namespace where nspname like %s", (TEST_SCHEMA_PREFIX + "%",))
        for (schema,) in cursor.fetchall():
            cursor.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(schema)))
    conn.close()


@pytest.fixture
def scratch_schema(pg_conn: connection) -> Iterator[str]:
    """A schema name that does not exist yet; dropped (cascade) afterwards."""
    name = f"{TEST_SCHEMA_PREFIX}_scratch_{uuid.uuid4().hex[:12]}"
    yield name
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def demo_source(pg_conn: connection) -> str:
    """Campaign tables with deterministic demo data, every edge case included."""
    schema = f"{TEST_SCHEMA_PREFIX}_campaign"
    load_demo(pg_conn, schema, TEST_DEMO_SIZE, seed=11)
    return schema


@pytest.fixture(scope="session")
def run_cubes(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DbtRun]:
    """Run dbt in a work dir of its own (target/, logs/), publishing into `schema`."""

    def run(args: list[str], dbt_vars: dict[str, Any], *, schema: str) -> DbtRun:
        return run_cubes_in(args, dbt_vars, schema=schema, work_dir=tmp_path_factory.mktemp("dbt"))

    return run


def _build(run_cubes: Callable[..., DbtRun], source: str, schema: str, timezone: str, mode: str) -> CubesBuild:
    dbt_vars = {"campaign_schema": source, "reporting_timezone": timezone, "message_center_source": mode}
    run = run_cubes(["build"], dbt_vars, schema=schema)
    return CubesBuild(schema=schema, source_schema=source, timezone=timezone, mode=mode, run=run, vars=dbt_vars)


@pytest.fixture(scope="session")
def default_build(run_cubes: Callable[..., DbtRun], demo_source: str) -> CubesBuild:
    """`dbt build` with the default settings (UTC, the control instance's archive)."""
    return _build(run_cubes, demo_source, f"{TEST_SCHEMA_PREFIX}_default", "UTC", "eventhisto")


@pytest.fixture(scope="session")
def execution_build(run_cubes: Callable[..., DbtRun], demo_source: str) -> CubesBuild:
    """`dbt build` of an execution instance's queues, dates in New York."""
    return _build(run_cubes, demo_source, f"{TEST_SCHEMA_PREFIX}_execution", "America/New_York", "execution")


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parents[2]

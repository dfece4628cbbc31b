"""Fixtures: a real PostgreSQL (the project-local one unless PGHOST is set), demo data, dbt builds.

Each test session works in a database of its own, created at the start and dropped
at the end, so that sessions never see each other's schemas and the demo database
is never touched. Where the server does not let us create a database, the session
uses the configured one and drops the schemas it created (named cubes_test*).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes import localpg
from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import DemoSize, load_demo
from support import CubesBuild
from support import run_cubes as run_cubes_in

TEST_SCHEMA_PREFIX = "cubes_test"
# Small enough to build in seconds, large enough for every edge case and many groups.
TEST_DEMO_SIZE = DemoSize(propositions=4_000, events=4_000, execution_events=2_000)


def _admin(statement: sql.Composable) -> None:
    conn = psycopg2.connect()
    conn.autocommit = True  # CREATE/DROP DATABASE cannot run in a transaction
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


@pytest.fixture(scope="session", autouse=True)
def database() -> Iterator[str | None]:
    """Point the session (and the dbt and orchestrate.py processes it starts) at its own database."""
    os.environ.update(localpg.connection_env())
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    name = f"{TEST_SCHEMA_PREFIX}_{os.getpid()}"
    try:
        _admin(sql.SQL("create database {}").format(sql.Identifier(name)))
    except psycopg2.errors.InsufficientPrivilege as refusal:
        print(
            f"\nconftest: cannot create a test database ({refusal.pgerror.strip()}); "
            f"using {os.environ.get('PGDATABASE')} and dropping the {TEST_SCHEMA_PREFIX}* schemas afterwards"
        )
        yield None
        return
    configured = os.environ.get("PGDATABASE")
    os.environ["PGDATABASE"] = name
    yield name
    if configured is None:
        del os.environ["PGDATABASE"]
    else:
        os.environ["PGDATABASE"] = configured
    _admin(sql.SQL("drop database {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="session")
def pg_conn(database: str | None) -> Iterator[connection]:
    """One autocommit connection for the whole session (to its own database, when it has one)."""
    conn = psycopg2.connect()
    conn.autocommit = True
    yield conn
    if database is None:  # a shared database: leave no test schema behind
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

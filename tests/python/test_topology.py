"""The separate analytics database topology on real clusters (docs/topologies.md).

A Campaign database with demo data on the project-local cluster; a hot standby of
that cluster made with `pg_basebackup -R`, started on a free port for this module;
a read-only login with a password (connect, usage, select, nothing else). The
cubes are built in the session's own database, reading Campaign from the standby
through postgres_fdw, and compared cell by cell with the independent oracle.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

import reference
from campaign_cubes import localpg
from campaign_cubes.dbt import DbtRun, run_dbt
from campaign_cubes.demo import DemoSize, load_demo

pytestmark = pytest.mark.slow

CAMPAIGN_SCHEMA = "campaign"
SCHEMA = "cubes_test_fdw"
ZONE = "Europe/Paris"
PROPOSITIONS_GRAIN = ("proposition_date", "channel_code", "delivery_id", "offer_id")
MESSAGE_CENTER_GRAIN = ("event_date", "channel_code", "status_code", "event_type")
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _admin(statement: sql.Composable, dbname: str | None = None) -> None:
    conn = psycopg2.connect(dbname=dbname) if dbname else psycopg2.connect()
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(statement)
    finally:
        conn.close()


def _scalar(conn: connection, query: str, *params: Any) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
        return row[0] if row else None


class Campaign:
    """The Campaign database on the primary, and its read-only login."""

    def __init__(self) -> None:
        suffix = f"{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.database = f"cubes_test_src_{suffix}"
        self.reader = f"cubes_test_ro_{suffix}"
        self.password = f"ro'{uuid.uuid4().hex} pw"  # a quote and a space: the literal must be escaped

    def create(self) -> None:
        _admin(sql.SQL("create database {}").format(sql.Identifier(self.database)))
        with self.connect() as conn:
            load_demo(conn, CAMPAIGN_SCHEMA, DemoSize(propositions=1_500, events=1_500, execution_events=600), seed=3)
        _admin(
            sql.SQL("create role {} login password {}").format(sql.Identifier(self.reader), sql.Literal(self.password))
        )
        _admin(
            sql.SQL(
                "grant connect on database {db} to {ro}; grant usage on schema {s} to {ro}; "
                "grant select on all tables in schema {s} to {ro}"
            ).format(
                db=sql.Identifier(self.database), s=sql.Identifier(CAMPAIGN_SCHEMA), ro=sql.Identifier(self.reader)
            ),
            self.database,
        )

    def connect(self) -> Any:
        conn = psycopg2.connect(dbname=self.database)
        conn.autocommit = True
        return _Closing(conn)

    def drop(self) -> None:
        _admin(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(self.database)))
        _admin(sql.SQL("drop role if exists {}").format(sql.Identifier(self.reader)))


class _Closing:
    """`with` on a psycopg2 connection commits but does not close; this closes."""

    def __init__(self, conn: connection) -> None:
        self.conn = conn

    def __enter__(self) -> connection:
        return self.conn

    def __exit__(self, *_: object) -> None:
        self.conn.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Standby:
    """A hot standby of the project-local cluster, in a temporary directory."""

    def __init__(self) -> None:
        self.user = localpg._server_user()
        self.bindir = localpg.find_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="cubes_test_standby_"))
        self.data = self.root / "data"
        self.port = _free_port()

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run(localpg._as_user(self.user, argv), capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {done.stderr.strip() or done.stdout.strip()}")

    def start(self) -> None:
        if self.user:
            shutil.chown(self.root, self.user, self.user)
        primary = os.environ
        self._run(
            [
                str(self.bindir / "pg_basebackup"),
                "-h",
                primary["PGHOST"],
                "-p",
                primary["PGPORT"],
                "-U",
                primary["PGUSER"],
                "-D",
                str(self.data),
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            ]
        )
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' "
            "-c hot_standby=on -c hot_standby_feedback=on"
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                str(self.data),
                "-l",
                str(self.root / "log"),
                "-o",
                options,
            ]
        )

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run([str(self.bindir / "pg_ctl"), "stop", "-m", "fast", "-D", str(self.data)])
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self, dbname: str) -> Any:
        conn = psycopg2.connect(host="127.0.0.1", port=self.port, dbname=dbname)
        conn.autocommit = True
        return _Closing(conn)

    def catch_up(self, primary: connection, dbname: str) -> None:
        """Wait until the standby has replayed everything the primary wrote so far."""
        lsn = _scalar(primary, "select pg_current_wal_lsn()")
        with self.connect(dbname) as standby:
            for _ in range(300):
                if _scalar(standby, "select pg_last_wal_replay_lsn() >= %s::pg_lsn", lsn):
                    return
                time.sleep(0.1)
        raise AssertionError(f"the standby did not replay up to {lsn} within 30 s")


@pytest.fixture(scope="module")
def campaign(database: str | None) -> Iterator[Campaign]:
    if database is None:
        pytest.skip("the test session has no database of its own: the separate-database topology needs one")
    source = Campaign()
    source.create()
    yield source
    source.drop()


@pytest.fixture(scope="module")
def standby(campaign: Campaign) -> Iterator[Standby]:
    conn = psycopg2.connect()
    try:
        senders = int(_scalar(conn, "show max_wal_senders"))
        local = _scalar(conn, "select inet_server_addr() = '127.0.0.1'::inet")
    finally:
        conn.close()
    if senders < 1 or not local:
        pytest.skip(f"the server cannot stream to a local standby (max_wal_senders={senders}, loopback={local})")
    try:
        replica = Standby()
    except localpg.LocalServerError as problem:
        pytest.skip(f"no standby: {problem}")
    try:
        replica.start()
    except (RuntimeError, subprocess.TimeoutExpired) as problem:
        replica.stop()
        pytest.skip(f"could not make a hot standby with pg_basebackup -R: {problem}")
    yield replica
    replica.stop()


@pytest.fixture(scope="module")
def source_env(campaign: Campaign, standby: Standby) -> dict[str, str]:
    """The separate-database topology, reading the standby with the read-only login."""
    dsn = f"host=127.0.0.1 port={standby.port} dbname={campaign.database} user={campaign.reader}"
    return {"CAMPAIGN_SOURCE_DSN": dsn, "CAMPAIGN_SOURCE_PASSWORD": campaign.password, "CAMPAIGN_CUBES_SCHEMA": SCHEMA}


@pytest.fixture(scope="module")
def build(source_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Callable[..., DbtRun]:
    def run(args: list[str], **dbt_vars: Any) -> DbtRun:
        merged = {"campaign_schema": CAMPAIGN_SCHEMA, "reporting_timezone": ZONE, **dbt_vars}
        return run_dbt([*args, "--vars", json.dumps(merged)], env=source_env, work_dir=tmp_path_factory.mktemp("fdw"))

    return run


@pytest.fixture(scope="module")
def first_build(build: Callable[..., DbtRun]) -> DbtRun:
    return build(["build"])


def explain(run: DbtRun) -> str:
    failed = "\n".join(f"{node.status} {node.name}: {node.message}" for node in run.failed)
    return f"dbt exit {run.exit_code}\n{failed}\n{run.log_file.read_text()[-4000:]}"


def test_build_through_a_standby_equals_the_oracle(
    first_build: DbtRun, campaign: Campaign, standby: Standby, pg_conn: connection
) -> None:
    assert first_build.ok, explain(first_build)
    with standby.connect(campaign.database) as replica:
        assert _scalar(replica, "select pg_is_in_recovery()")
        # nothing of the cubes was written on the Campaign side
        assert not _scalar(replica, "select count(*) from pg_namespace where nspname like %s", SCHEMA + "%")
    with campaign.connect() as source:
        expected = reference.propositions_cube(source, CAMPAIGN_SCHEMA, ZONE)
        actual = reference.published(pg_conn, SCHEMA, "agg_nmspropositionrcp_full", PROPOSITIONS_GRAIN)
        problems = reference.differences(expected, actual)
        assert not problems and len(actual) > 100, "\n".join(problems[:20])
        expected = reference.message_center_cube(source, CAMPAIGN_SCHEMA, ZONE, "eventhisto")
        actual = reference.published(pg_conn, SCHEMA, "agg_messagecenter_full", MESSAGE_CENTER_GRAIN)
        problems = reference.differences(expected, actual)
        assert not problems and len(actual) > 100, "\n".join(problems[:20])
    assert (
        _scalar(
            pg_conn,
            "select count(*) from pg_foreign_table as f join pg_class as c on c.oid = f.ftrelid "
            "where c.relnamespace = %s::regnamespace",
            SCHEMA + "_campaign",
        )
        == 7
    )


def test_the_password_is_in_no_log(first_build: DbtRun, campaign: Campaign) -> None:
    logs = first_build.log_file.parent
    written = [path for path in logs.rglob("*") if path.is_file()]
    assert written and "alter user mapping" in (logs / "dbt.log").read_text()
    assert not [path for path in written if campaign.password in path.read_text(errors="replace")]
    assert not [path for path in written if campaign.password.replace("'", "''") in path.read_text(errors="replace")]


def test_relinking_follows_column_changes_and_keeps_the_views(
    first_build: DbtRun, build: Callable[..., DbtRun], campaign: Campaign, standby: Standby, pg_conn: connection
) -> None:
    assert first_build.ok, explain(first_build)
    view = f"{SCHEMA}_staging.stg_campaign__deliveries"
    before = _scalar(pg_conn, "select to_regclass(%s)::oid", view)
    with campaign.connect() as source:
        source.cursor().execute(f"alter table {CAMPAIGN_SCHEMA}.nmsdelivery add column sextra text")
        standby.catch_up(source, campaign.database)
    try:
        again = build(["run", "--select", "agg_messageCenter_full"])
        assert again.ok, explain(again)
        assert (
            _scalar(
                pg_conn,
                "select count(*) from information_schema.columns where table_schema = %s "
                "and table_name = 'nmsdelivery' and column_name = 'sextra'",
                SCHEMA + "_campaign",
            )
            == 1
        )
        # altered in place, not dropped: the staging view on it is the same object
        assert _scalar(pg_conn, "select to_regclass(%s)::oid", view) == before
    finally:
        with campaign.connect() as source:
            source.cursor().execute(f"alter table {CAMPAIGN_SCHEMA}.nmsdelivery drop column sextra")
            standby.catch_up(source, campaign.database)


def _doctor(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "orchestrate.py"),
            "doctor",
            "--vars",
            json.dumps({"campaign_schema": CAMPAIGN_SCHEMA, "reporting_timezone": ZONE}),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=PROJECT_ROOT,
    )


def test_doctor_passes_then_names_a_revoked_table(
    source_env: dict[str, str], campaign: Campaign, standby: Standby
) -> None:
    healthy = _doctor(source_env)
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "standby: a hot standby; hot_standby_feedback=on" in healthy.stdout
    assert "FAIL" not in healthy.stdout
    table = f"{CAMPAIGN_SCHEMA}.nmsoffer"
    with campaign.connect() as source:
        source.cursor().execute(
            sql.SQL("revoke select on {} from {}").format(
                sql.Identifier(CAMPAIGN_SCHEMA, "nmsoffer"), sql.Identifier(campaign.reader)
            )
        )
        standby.catch_up(source, campaign.database)
    try:
        broken = _doctor(source_env)
    finally:
        with campaign.connect() as source:
            source.cursor().execute(
                sql.SQL("grant select on {} to {}").format(
                    sql.Identifier(CAMPAIGN_SCHEMA, "nmsoffer"), sql.Identifier(campaign.reader)
                )
            )
            standby.catch_up(source, campaign.database)
    assert broken.returncode == 2, broken.stdout + broken.stderr
    fails = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fails) == 1 and table in fails[0], broken.stdout
    assert f'grant select on {table} to "{campaign.reader}";' in broken.stdout.splitlines()


def _insert_events_until(campaign: Campaign, stop: threading.Event, inserted: list[int], errors: list[str]) -> None:
    """Campaign at work on the primary: new events keep arriving (and replicating) during the build."""
    try:
        with campaign.connect() as conn, conn.cursor() as cursor:
            key = 910_000_000
            while not stop.is_set():
                key += 1
                cursor.execute(
                    f"insert into {CAMPAIGN_SCHEMA}.nmseventhisto (bieventhistoid, stype, istatus, "
                    "iwishedchannel, tscreated, tslastmodified) values (%s, 'LIVE', 2, 0, now(), now())",
                    (key,),
                )
                inserted.append(key)
                time.sleep(0.002)
    except psycopg2.Error as problem:
        errors.append(str(problem))


def test_events_arriving_during_the_build_are_read_in_one_snapshot(
    first_build: DbtRun, build: Callable[..., DbtRun], campaign: Campaign, standby: Standby, pg_conn: connection
) -> None:
    # postgres_fdw runs one remote repeatable-read transaction per local transaction:
    # the key census, the fact count and the candidate read one snapshot of the standby.
    assert first_build.ok, explain(first_build)
    with campaign.connect() as source:
        before = _scalar(
            source,
            f"select count(distinct bieventhistoid) filter (where bieventhistoid <> 0) "
            f"+ count(*) filter (where bieventhistoid is null) from {CAMPAIGN_SCHEMA}.nmseventhisto",
        )
    stop, inserted, errors = threading.Event(), list[int](), list[str]()
    writer = threading.Thread(target=_insert_events_until, args=(campaign, stop, inserted, errors))
    writer.start()
    try:
        runs = [build(["run", "--select", "agg_messageCenter_full"]) for _ in range(2)]
    finally:
        stop.set()
        writer.join()
        with campaign.connect() as source:
            source.cursor().execute(f"delete from {CAMPAIGN_SCHEMA}.nmseventhisto where bieventhistoid > 910000000")
            standby.catch_up(source, campaign.database)
    assert errors == [] and len(inserted) > 10
    for run in runs:
        assert run.ok, explain(run)
    published = _scalar(pg_conn, f"select sum(events) from {SCHEMA}.agg_messagecenter_full")
    # the live events are appended one by one: a count between before and after is the
    # source at one instant, and the audit found the candidate equal to the fact count
    assert before < published <= before + len(inserted)
    with pg_conn.cursor() as cursor:
        cursor.execute(
            f"select outcome, candidate_total, fact_rows from {SCHEMA}_audit.publication_log "
            "where model = 'agg_messageCenter_full' order by recorded_at desc limit 2"
        )
        for outcome, candidate_total, fact_rows in cursor.fetchall():
            assert outcome == "published" and candidate_total == fact_rows


def test_the_dsn_is_read_as_libpq_reads_it(database: str | None, tmp_path: Path) -> None:
    # The link is made from Jinja (dbt alone, no Python of ours): its parser must agree with libpq's.
    dsns = [
        "host=campaign.example port = 5433 dbname='my db' user=o\\'k",
        "host=h dbname=c options='-c statement_timeout=0 -c x=\\'1\\'' sslmode=require",
        "postgresql://us%40r@[::1]:6432/camp%2Fdb?sslmode=require&application_name=a%20b",
        "postgres://campaign-replica/campaign",
    ]
    template = "{% for dsn in var('dsns') %}{{ tojson(parse_campaign_dsn(dsn)) }}\n{% endfor %}"
    run = run_dbt(["compile", "--inline", template, "--vars", json.dumps({"dsns": dsns})], env={}, work_dir=tmp_path)
    assert run.exit_code == 0, run.log_file.read_text()[-3000:]
    printed = run.log_file.read_text().split("Compiled inline node is:", 1)[1]
    parsed = [json.loads(line) for line in printed.splitlines() if line.startswith("{")]
    assert parsed == [psycopg2.extensions.parse_dsn(dsn) for dsn in dsns]

"""Publication: never a bad aggregate, never a broken view (macros/published_table.sql).

Each test drives real dbt processes against a real PostgreSQL, on a Campaign schema
of its own (this module changes the source data).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import DemoSize, load_demo

pytestmark = pytest.mark.slow

SOURCE = "cubes_test_pub_campaign"
SCHEMA = "cubes_test_pub"
TABLE = f"{SCHEMA}.agg_messagecenter_full"
ANALYST = "cubes_test_analyst"


@pytest.fixture(scope="module")
def publish(pg_conn: connection, run_cubes: Callable[..., DbtRun]) -> Iterator[Callable[..., DbtRun]]:
    """`publish(command, **vars)`: dbt on this module's source and schema, after a first full build."""
    load_demo(pg_conn, SOURCE, DemoSize(propositions=500, events=3_000, execution_events=100), seed=5)

    def run(command: str = "run", **dbt_vars: Any) -> DbtRun:
        args = [command, "--select", "agg_messageCenter_full"]
        return run_cubes(args, {"campaign_schema": SOURCE, **dbt_vars}, schema=SCHEMA)

    first = run_cubes(["build", "--select", "+agg_messageCenter_full"], {"campaign_schema": SOURCE}, schema=SCHEMA)
    assert first.ok, first.log_file.read_text()[-3000:]
    yield run
    if _scalar(pg_conn, "select count(*) from pg_roles where rolname = %s", ANALYST):
        with pg_conn.cursor() as cursor:  # roles are cluster-wide: leave none behind
            cursor.execute(sql.SQL("drop owned by {role}; drop role {role}").format(role=sql.Identifier(ANALYST)))


def _scalar(conn: connection, query: str, *params: Any) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
        return row[0] if row else None


def checksum(conn: connection, relation: str = TABLE) -> tuple[int, str]:
    """Row count and an md5 over every row's text, in a fixed order."""
    with conn.cursor() as cursor:
        cursor.execute(
            f"select count(*), md5(coalesce(string_agg(t::text, '|' order by t::text), '')) from {relation} as t"
        )
        count, digest = cursor.fetchone()
        return int(count), str(digest)


def source_events(conn: connection) -> int:
    """The events the aggregate must count: deduplicated, placeholder excluded."""
    return int(
        _scalar(
            conn,
            f"""
        select count(distinct bieventhistoid) filter (where bieventhistoid <> 0)
               + count(*) filter (where bieventhistoid is null)
        from {SOURCE}.nmseventhisto""",
        )
    )


def published_events(conn: connection) -> int:
    return int(_scalar(conn, f"select coalesce(sum(events), 0) from {TABLE}"))


def last_publication(conn: connection) -> tuple[str, str | None]:
    with conn.cursor() as cursor:
        cursor.execute(
            f"select outcome, findings from {SCHEMA}_audit.publication_log "
            "where model = 'agg_messageCenter_full' order by recorded_at desc limit 1"
        )
        return cursor.fetchone()  # type: ignore[return-value]


def test_refused_build_leaves_the_published_table_byte_identical(
    pg_conn: connection, publish: Callable[..., DbtRun]
) -> None:
    before = checksum(pg_conn)
    assert before[0] > 100
    with pg_conn.cursor() as cursor:
        cursor.execute(
            f"create table {SOURCE}.events_backup as table {SOURCE}.nmseventhisto; truncate {SOURCE}.nmseventhisto"
        )
    try:
        for command in ("run", "build"):
            refused = publish(command)
            log = refused.log_file.read_text()
            assert refused.exit_code == 1, log[-3000:]
            assert "agg_messagecenter_full was NOT published: volume guard: the new aggregate counts 0 events" in log
            assert checksum(pg_conn) == before
            assert last_publication(pg_conn)[0] == "rejected"
            assert _scalar(pg_conn, f"select count(*) from {SCHEMA}_audit.agg_messagecenter_full__rejected") == 0
    finally:
        with pg_conn.cursor() as cursor:
            cursor.execute(
                f"insert into {SOURCE}.nmseventhisto table {SOURCE}.events_backup; drop table {SOURCE}.events_backup"
            )
    restored = publish("build")
    assert restored.ok, restored.log_file.read_text()[-3000:]
    assert checksum(pg_conn) == before
    assert last_publication(pg_conn) == ("published", None)
    assert _scalar(pg_conn, "select to_regclass(%s)", f"{SCHEMA}_audit.agg_messagecenter_full__rejected") is None


def test_a_deliberate_purge_passes_with_the_guard_disabled(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    with pg_conn.cursor() as cursor:
        cursor.execute(f"delete from {SOURCE}.nmseventhisto where bieventhistoid % 10 <> 0 returning *")
        removed = cursor.fetchall()
    try:
        assert publish("run").exit_code == 1
        purged = publish("run", publish_min_volume_ratio=0)
        assert purged.ok, purged.log_file.read_text()[-3000:]
        assert published_events(pg_conn) == source_events(pg_conn)
    finally:
        with pg_conn.cursor() as cursor:
            cursor.executemany(
                f"insert into {SOURCE}.nmseventhisto values ({', '.join(['%s'] * len(removed[0]))})", removed
            )
    restored = publish("run", publish_min_volume_ratio=0)
    assert restored.ok and published_events(pg_conn) == source_events(pg_conn)


def test_keys_duplicated_since_the_last_build_count_once(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    # `dbt run --select agg_messageCenter_full` alone does not build the base table
    # of repeated keys; the publication refreshes it in its own snapshot, so new
    # copies of 50 existing events (a replica, an export) still count once each.
    copied = (
        f"bieventhistoid in (select distinct bieventhistoid from {SOURCE}.nmseventhisto "
        "where bieventhistoid > 0 order by bieventhistoid limit 50)"
    )
    originals = f"bieventhistoid in (select bieventhistoid from {SOURCE}.copied_events)"
    with pg_conn.cursor() as cursor:
        cursor.execute(f"create table {SOURCE}.copied_events as select * from {SOURCE}.nmseventhisto where {copied}")
        cursor.execute(f"insert into {SOURCE}.nmseventhisto table {SOURCE}.copied_events")
    try:
        expected = source_events(pg_conn)
        run = publish("run")
        assert run.ok, run.log_file.read_text()[-3000:]
        assert published_events(pg_conn) == expected
        assert (
            _scalar(
                pg_conn,
                f"select count(*) from {SCHEMA}_staging.base_campaign__event_history_repeated_keys where {originals}",
            )
            == 50
        )
    finally:
        with pg_conn.cursor() as cursor:
            cursor.execute(
                f"delete from {SOURCE}.nmseventhisto where {originals}; "
                f"insert into {SOURCE}.nmseventhisto table {SOURCE}.copied_events; "
                f"drop table {SOURCE}.copied_events"
            )
    restored = publish("run")
    assert restored.ok and published_events(pg_conn) == source_events(pg_conn)


def test_a_base_model_built_alone_fills_its_table_in_place(
    pg_conn: connection, publish: Callable[..., DbtRun], run_cubes: Callable[..., DbtRun]
) -> None:
    base = f"{SCHEMA}_staging.base_campaign__event_history_repeated_keys"
    with pg_conn.cursor() as cursor:
        cursor.execute(f"delete from {base}")
    run = run_cubes(
        ["run", "--select", "base_campaign__event_history_repeated_keys"], {"campaign_schema": SOURCE}, schema=SCHEMA
    )
    assert run.ok, run.log_file.read_text()[-3000:]
    repeated = _scalar(
        pg_conn,
        f"select count(*) from (select from {SOURCE}.nmseventhisto where bieventhistoid <> 0 "
        "group by bieventhistoid having count(*) > 1) as keys",
    )
    assert repeated > 0 and _scalar(pg_conn, f"select count(*) from {base}") == repeated
    # filled in place: the staging view built on it is still there
    assert _scalar(pg_conn, "select to_regclass(%s) is not null", f"{SCHEMA}_staging.stg_campaign__event_history")


def _read_totals(stop: threading.Event, seen: list[int], errors: list[str]) -> None:
    """A reporting user: reads the published total over and over, on its own connection."""
    try:
        conn = psycopg2.connect()
        conn.autocommit = True
        with conn.cursor() as cursor:
            while not stop.is_set():
                cursor.execute(f"select coalesce(sum(events), 0) from {TABLE}")
                seen.append(int(cursor.fetchone()[0]))
        conn.close()
    except psycopg2.Error as problem:  # any error is a failure of publication
        errors.append(str(problem))


def _toggle_extra_events(conn: connection, present: bool) -> None:
    """Add or remove 40 extra events, so that two successive aggregates differ."""
    with conn.cursor() as cursor:
        if present:
            cursor.execute(f"delete from {SOURCE}.nmseventhisto where bieventhistoid >= 900000000")
        else:
            cursor.execute(
                f"insert into {SOURCE}.nmseventhisto (bieventhistoid, stype, istatus, iwishedchannel, "
                f"tscreated, tslastmodified) select 900000000 + n, 'EXTRA', 2, 0, "
                f"timestamptz '2026-01-01 12:00+00', now() from generate_series(1, 40) as n"
            )


def test_views_grants_and_readers_survive_twenty_rebuilds(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    with pg_conn.cursor() as cursor:
        cursor.execute(
            f"create view {SCHEMA}.analyst_daily_events as "
            f"select event_date, sum(events) as events from {TABLE} group by event_date"
        )
        cursor.execute(sql.SQL("create role {} nologin").format(sql.Identifier(ANALYST)))
        cursor.execute(sql.SQL("grant select on {} to {}").format(sql.SQL(TABLE), sql.Identifier(ANALYST)))
    table_oid = _scalar(pg_conn, "select %s::regclass::oid", TABLE)
    base = source_events(pg_conn)
    valid_totals = {base, base + 40}

    stop, errors = threading.Event(), []
    seen: list[list[int]] = [[], [], []]
    readers = [threading.Thread(target=_read_totals, args=(stop, reads, errors)) for reads in seen]
    for reader in readers:
        reader.start()
    try:
        extra = False
        for rebuild in range(20):
            _toggle_extra_events(pg_conn, extra)
            extra = not extra
            run = publish("build" if rebuild % 4 == 3 else "run")
            assert run.ok, run.log_file.read_text()[-3000:]
            assert published_events(pg_conn) == base + (40 if extra else 0)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
        if extra:
            _toggle_extra_events(pg_conn, True)

    assert errors == []
    assert all(len(reads) > 20 for reads in seen), [len(reads) for reads in seen]
    assert {total for reads in seen for total in reads} <= valid_totals
    assert _scalar(pg_conn, "select %s::regclass::oid", TABLE) == table_oid
    assert _scalar(pg_conn, f"select sum(events) from {SCHEMA}.analyst_daily_events") == published_events(pg_conn)
    assert _scalar(pg_conn, "select has_table_privilege(%s, %s, 'select')", ANALYST, TABLE)
    assert _scalar(pg_conn, "select has_table_privilege('campaign_cubes_reader', %s, 'select')", TABLE)
    assert not _scalar(
        pg_conn,
        "select has_table_privilege('campaign_cubes_reader', %s, 'select')",
        f"{SCHEMA}_staging.int_message_center_events__unioned",
    )
    assert "Message Center cube" in _scalar(pg_conn, "select obj_description(%s::regclass)", TABLE)


def _node_seconds(run: DbtRun, name: str) -> float:
    results = json.loads((run.log_file.parent.parent / "target" / "run_results.json").read_text())["results"]
    return float(next(r["execution_time"] for r in results if r["unique_id"].endswith("." + name)))


def test_a_blocked_publication_fails_cleanly_within_its_lock_timeout(
    pg_conn: connection, publish: Callable[..., DbtRun]
) -> None:
    before = checksum(pg_conn)
    blocker = psycopg2.connect()  # e.g. a CREATE INDEX or an ALTER in a long transaction
    try:
        with blocker.cursor() as cursor:
            cursor.execute(f"lock table {TABLE} in share mode")
        blocked = publish("run", publish_lock_timeout="2s")
        assert blocked.exit_code == 1
        assert "canceling statement due to lock timeout" in blocked.log_file.read_text()
        assert _node_seconds(blocked, "agg_messageCenter_full") < 2 + 5  # the wait, plus building the copy
        # readers were never blocked meanwhile
        assert _scalar(pg_conn, "set statement_timeout = '1s'; select count(*) from " + TABLE) == before[0]
    finally:
        blocker.close()
    assert checksum(pg_conn) == before


def test_a_long_reader_does_not_delay_publication(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    reader = psycopg2.connect()  # e.g. pg_dump, or a report that runs for minutes
    try:
        with reader.cursor() as cursor:
            cursor.execute(f"select count(*) from {TABLE}")
        run = publish("run", publish_lock_timeout="2s")
        assert run.ok, run.log_file.read_text()[-3000:]
    finally:
        reader.close()


def test_a_second_build_of_the_same_aggregate_is_refused(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    before = checksum(pg_conn)
    holder = psycopg2.connect()  # stands for a build in progress: it holds the aggregate's claim
    try:
        with holder.cursor() as cursor:
            cursor.execute(
                f"select 1 from {SCHEMA}_audit.publication_claims where model = 'agg_messagecenter_full' for update"
            )
            assert cursor.fetchall() == [(1,)]
        refused = publish("run")
        assert refused.exit_code == 1
        assert "another build of" in refused.log_file.read_text()
    finally:
        holder.close()
    assert checksum(pg_conn) == before
    assert publish("run").ok


def test_published_schema_grants_nothing_else_to_the_reporting_role(pg_conn: connection, publish: Any) -> None:
    for schema in (f"{SCHEMA}_staging", f"{SCHEMA}_audit"):
        assert not _scalar(pg_conn, "select has_schema_privilege('campaign_cubes_reader', %s, 'usage')", schema)
    assert _scalar(pg_conn, "select has_schema_privilege('campaign_cubes_reader', %s, 'usage')", SCHEMA)
    assert not _scalar(pg_conn, "select has_table_privilege('campaign_cubes_reader', %s, 'insert')", TABLE)


def _insert_events_until(stop: threading.Event, errors: list[str]) -> None:
    """Campaign at work: new events arrive while the aggregate is built."""
    try:
        conn = psycopg2.connect()
        conn.autocommit = True
        with conn.cursor() as cursor:
            key = 910_000_000
            while not stop.is_set():
                key += 1
                cursor.execute(
                    f"insert into {SOURCE}.nmseventhisto (bieventhistoid, stype, istatus, iwishedchannel, "
                    f"tscreated, tslastmodified) values (%s, 'LIVE', 2, 0, now(), now())",
                    (key,),
                )
        conn.close()
    except psycopg2.Error as problem:
        errors.append(str(problem))


def test_events_arriving_during_the_build_do_not_fail_the_audit(
    pg_conn: connection, publish: Callable[..., DbtRun]
) -> None:
    # The key pass's count of the fact rows and the candidate read one snapshot
    # (repeatable read); under read committed, rows committed between the two
    # statements would make the totals differ and refuse every build of a busy instance.
    stop, errors = threading.Event(), []
    writer = threading.Thread(target=_insert_events_until, args=(stop, errors))
    writer.start()
    try:
        runs = [publish("run") for _ in range(3)]
    finally:
        stop.set()
        writer.join()
    live = _scalar(pg_conn, f"select count(*) from {SOURCE}.nmseventhisto where bieventhistoid > 910000000")
    with pg_conn.cursor() as cursor:
        cursor.execute(f"delete from {SOURCE}.nmseventhisto where bieventhistoid > 910000000")
    assert errors == [] and live > 0
    for run in runs:
        assert run.ok, run.log_file.read_text()[-3000:]
    assert last_publication(pg_conn)[0] == "published"

"""Tests for campaign_cubes.demo: determinism, row counts, edge cases, cardinalities.

Every edge case of the specification must be present even in a tiny load, since
the model tests run on small demo data: one named query per case below.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2 import extensions, sql
from psycopg2.extensions import connection

from campaign_cubes.demo import CAMPAIGN_TABLES, DEMO_MARKER, DemoRefused, DemoSize, create_campaign_tables, load_demo

TINY = DemoSize(propositions=200, events=200)
EVENT_TABLES = {"nmseventhisto": "bieventhistoid", "nmsrtevent": "irteventid", "nmsbatchevent": "ibatcheventid"}
KEYS = {
    "nmsoffer": "iofferid",
    "nmsofferspace": "iofferspaceid",
    "nmsdelivery": "ideliveryid",
    "nmspropositionrcp": "ipropositionid",
    **EVENT_TABLES,
}
CHANNEL_CODES = "(0, 1, 2, 3, 4, 5, 20, 25, 40, 41, 42, 120)"


def _scalar(conn: connection, query: str, **idents: str) -> Any:
    """Run query, its {placeholders} replaced by the quoted identifiers given, and return one value."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(query).format(**{k: sql.Identifier(v) for k, v in idents.items()}))
        row = cur.fetchone()
        assert row is not None
        return row[0]


def _rows(conn: connection, query: str, **idents: str) -> list[tuple[Any, ...]]:
    """Like _scalar, all rows."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(query).format(**{k: sql.Identifier(v) for k, v in idents.items()}))
        return cur.fetchall()


def _md5_per_table(conn: connection, schema: str) -> dict[str, str]:
    """md5 of each table's rows, as text, in sorted order: equal iff the contents are."""
    return {
        table: _scalar(
            conn,
            "select md5(coalesce(string_agg(t::text, E'\\n' order by t::text), '')) from {s}.{t} as t",
            s=schema,
            t=table,
        )
        for table in CAMPAIGN_TABLES
    }


def _drop_schema(conn: connection, schema: str) -> None:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def tiny(pg_conn: connection) -> Iterator[str]:
    """Schema holding a tiny load (200 propositions, 200 events, 20 execution events)."""
    schema = f"demo_tiny_{uuid.uuid4().hex[:8]}"
    load_demo(pg_conn, schema, TINY, seed=1)
    yield schema
    _drop_schema(pg_conn, schema)


@pytest.fixture(scope="module")
def default(pg_conn: connection) -> Iterator[str]:
    """Schema holding a load at the default size."""
    schema = f"demo_default_{uuid.uuid4().hex[:8]}"
    load_demo(pg_conn, schema)
    yield schema
    _drop_schema(pg_conn, schema)


# --- determinism, counts, transactions ------------------------------------------------


def test_same_seed_gives_same_data_and_another_seed_differs(pg_conn: connection, scratch_schema: str) -> None:
    size = DemoSize(propositions=500, events=500)
    load_demo(pg_conn, scratch_schema, size, seed=7)
    first = _md5_per_table(pg_conn, scratch_schema)
    # The session's time zone must not matter: the data is built from epoch seconds.
    with pg_conn.cursor() as cur:
        cur.execute("set timezone = 'Pacific/Chatham'")
    try:
        load_demo(pg_conn, scratch_schema, size, seed=7)
    finally:
        with pg_conn.cursor() as cur:
            cur.execute("reset timezone")
    assert _md5_per_table(pg_conn, scratch_schema) == first
    load_demo(pg_conn, scratch_schema, size, seed=8)
    other = _md5_per_table(pg_conn, scratch_schema)
    # nmsofferspace is a fixed layout; everything else depends on the seed.
    for table in CAMPAIGN_TABLES:
        if table != "nmsofferspace":
            assert other[table] != first[table], table


def test_returned_counts_equal_table_rows(pg_conn: connection, scratch_schema: str) -> None:
    counts = load_demo(pg_conn, scratch_schema, TINY)
    assert list(counts) == list(CAMPAIGN_TABLES)
    for table in CAMPAIGN_TABLES:
        assert counts[table] == _scalar(pg_conn, "select count(*) from {s}.{t}", s=scratch_schema, t=table), table


def test_sizes_are_generated_rows_plus_guaranteed_extras(pg_conn: connection, scratch_schema: str) -> None:
    load_demo(pg_conn, scratch_schema, DemoSize(propositions=300, events=100, execution_events=50))
    distinct_keys = "select count(distinct {k}) from {s}.{t} where {k} <> 0"
    assert _scalar(pg_conn, distinct_keys, s=scratch_schema, t="nmspropositionrcp", k="ipropositionid") == 300 + 31
    assert _scalar(pg_conn, distinct_keys, s=scratch_schema, t="nmseventhisto", k="bieventhistoid") == 100 + 21
    assert _scalar(pg_conn, distinct_keys, s=scratch_schema, t="nmsrtevent", k="irteventid") == 30 + 21
    assert _scalar(pg_conn, distinct_keys, s=scratch_schema, t="nmsbatchevent", k="ibatcheventid") == 20 + 21


def test_execution_events_default_to_a_tenth_split_60_40() -> None:
    assert DemoSize(events=1000).execution_split() == (60, 40)
    assert DemoSize(events=1000, execution_events=10).execution_split() == (6, 4)
    with pytest.raises(ValueError):
        DemoSize(propositions=-1)


def test_zero_rows_still_gives_placeholders_and_edge_cases(pg_conn: connection, scratch_schema: str) -> None:
    counts = load_demo(pg_conn, scratch_schema, DemoSize(propositions=0, events=0))
    assert counts["nmspropositionrcp"] == 1 + 31 + 3
    assert counts["nmseventhisto"] == counts["nmsrtevent"] == counts["nmsbatchevent"] == 1 + 21 + 3


def test_works_without_autocommit_and_commits(pg_conn: connection, scratch_schema: str) -> None:
    pg_conn.autocommit = False
    try:
        load_demo(pg_conn, scratch_schema, DemoSize(propositions=50, events=50))
        assert pg_conn.get_transaction_status() == extensions.TRANSACTION_STATUS_IDLE
    finally:
        pg_conn.rollback()
        pg_conn.autocommit = True
    assert _scalar(pg_conn, "select count(*) > 0 from {s}.nmspropositionrcp", s=scratch_schema)


def test_leaves_only_the_seven_tables(pg_conn: connection, scratch_schema: str) -> None:
    load_demo(pg_conn, scratch_schema, DemoSize(propositions=50, events=50))
    with pg_conn.cursor() as cur:
        cur.execute(
            "select array_agg(c.relname::text order by c.relname) from pg_class as c "
            "join pg_namespace as n on n.oid = c.relnamespace where n.nspname = %s",
            (scratch_schema,),
        )
        tables = cur.fetchone()[0]
        cur.execute(
            "select count(*) from pg_proc where pronamespace = pg_my_temp_schema() "
            "and proname in ('rnd', 'day_index', 'prop_edge', 'event_edge')"
        )
        helpers = cur.fetchone()[0]
        cur.execute(
            "select count(*) from pg_class where relnamespace = pg_my_temp_schema() "
            "and relname in ('demo_space', 'demo_delivery')"
        )
        plans = cur.fetchone()[0]
    assert tables == sorted(CAMPAIGN_TABLES)
    assert helpers == 0 and plans == 0


def test_create_campaign_tables_recreates_them_empty(pg_conn: connection, scratch_schema: str) -> None:
    load_demo(pg_conn, scratch_schema, DemoSize(propositions=50, events=50))
    create_campaign_tables(pg_conn, scratch_schema)
    for table in CAMPAIGN_TABLES:
        assert _scalar(pg_conn, "select count(*) from {s}.{t}", s=scratch_schema, t=table) == 0, table


def test_reload_keeps_views_built_on_the_tables(pg_conn: connection, scratch_schema: str) -> None:
    """Like dbt's staging views: the tables are emptied in place instead of dropped."""
    load_demo(pg_conn, scratch_schema, DemoSize(propositions=50, events=50))
    with pg_conn.cursor() as cur:
        cur.execute(
            sql.SQL("create view {}.v as select * from {}.nmsoffer").format(
                sql.Identifier(scratch_schema), sql.Identifier(scratch_schema)
            )
        )
    first = _md5_per_table(pg_conn, scratch_schema)
    counts = load_demo(pg_conn, scratch_schema, DemoSize(propositions=50, events=50))
    assert _md5_per_table(pg_conn, scratch_schema) == first
    assert _scalar(pg_conn, "select count(*) from {s}.v", s=scratch_schema) == counts["nmsoffer"]


def test_failed_load_rolls_back_and_leaves_the_connection_usable(pg_conn: connection, scratch_schema: str) -> None:
    # A demo schema whose nmsoffer has the wrong shape and is pinned by a view (so it
    # is kept): the insert into it fails.
    with pg_conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "create schema {s}; comment on schema {s} is {m}; "
                "create table {s}.nmsoffer (iofferid integer); "
                "create view {s}.v as select * from {s}.nmsoffer"
            ).format(s=sql.Identifier(scratch_schema), m=sql.Literal(DEMO_MARKER))
        )
    with pytest.raises(psycopg2.Error, match="nmsoffer"):
        load_demo(pg_conn, scratch_schema, DemoSize(propositions=10, events=10))
    assert pg_conn.get_transaction_status() == extensions.TRANSACTION_STATUS_IDLE
    with pg_conn.cursor() as cur:
        cur.execute("select to_regclass(%s) is null", (f"{scratch_schema}.nmspropositionrcp",))
        assert cur.fetchone()[0], "the load was not rolled back"


def test_refuses_to_replace_campaign_tables_it_did_not_create(pg_conn: connection, scratch_schema: str) -> None:
    with pg_conn.cursor() as cur:
        cur.execute(
            sql.SQL(
                "create schema {s}; create table {s}.nmspropositionrcp (ipropositionid bigint); "
                "insert into {s}.nmspropositionrcp values (42)"
            ).format(s=sql.Identifier(scratch_schema))
        )
    with pytest.raises(DemoRefused, match="did not create"):
        load_demo(pg_conn, scratch_schema, DemoSize(propositions=10, events=10))
    assert _scalar(pg_conn, "select count(*) from {s}.nmspropositionrcp", s=scratch_schema) == 1


# --- placeholder rows -------------------------------------------------------------------


@pytest.mark.parametrize("table", CAMPAIGN_TABLES)
def test_placeholder_row_with_key_0(pg_conn: connection, tiny: str, table: str) -> None:
    assert _scalar(pg_conn, "select count(*) from {s}.{t} where {k} = 0", s=tiny, t=table, k=KEYS[table]) == 1


def test_placeholder_rows_look_like_data(pg_conn: connection, tiny: str) -> None:
    """A model that forgets to drop them would count and label them."""
    assert _scalar(pg_conn, "select ichannel from {s}.nmsofferspace where iofferspaceid = 0", s=tiny) == 0
    assert _scalar(pg_conn, "select imessagetype from {s}.nmsdelivery where ideliveryid = 0", s=tiny) == 0
    assert _scalar(pg_conn, "select istatus from {s}.nmspropositionrcp where ipropositionid = 0", s=tiny) == 1
    for table, key in EVENT_TABLES.items():
        assert _scalar(
            pg_conn,
            "select stype = 'ORDER_CONFIRMATION' and istatus = 2 and tscreated is not null from {s}.{t} where {k} = 0",
            s=tiny,
            t=table,
            k=key,
        )


# --- edge cases, each present in a tiny load ---------------------------------------------

P = "{s}.nmspropositionrcp"
PROPOSITION_CASES = {
    "duplicate_id_differs_in_status_and_lastmodified": f"select ipropositionid from {P} group by 1 "
    "having count(*) = 2 and count(distinct istatus) = 2 and count(distinct tslastmodified) = 2",
    "duplicate_id_wrong_copy_changes_counted_statuses": f"select ipropositionid from {P} group by 1 "
    "having count(distinct istatus) = 2 and bool_or(istatus in (1, 3, 5, 99))",
    "duplicate_id_newer_copy_inserted_second": f"select ipropositionid from {P} group by 1 having count(*) = 2 "
    "and (array_agg(tslastmodified order by ctid))[2] > (array_agg(tslastmodified order by ctid))[1]",
    "duplicate_id_newer_copy_inserted_first": f"select ipropositionid from {P} group by 1 having count(*) = 2 "
    "and (array_agg(tslastmodified order by ctid))[1] > (array_agg(tslastmodified order by ctid))[2]",
    "duplicate_id_one_copy_null_lastmodified": f"select ipropositionid from {P} group by 1 "
    "having count(*) = 2 and count(tslastmodified) = 1 and count(distinct istatus) = 2",
    "offer_null": f"select 1 from {P} where iofferid is null",
    "offer_0": f"select 1 from {P} where iofferid = 0 and ipropositionid <> 0",
    "offer_orphan": f"select 1 from {P} where iofferid not in (select iofferid from {{s}}.nmsoffer)",
    "delivery_null": f"select 1 from {P} where ideliveryid is null",
    "delivery_0_inbound": f"select 1 from {P} where ideliveryid = 0 and iofferspaceid > 0 and ipropositionid <> 0",
    "delivery_orphan": f"select 1 from {P} where ideliveryid not in (select ideliveryid from {{s}}.nmsdelivery)",
    "space_0_channel_from_delivery": f"select 1 from {P} as p join {{s}}.nmsdelivery as d on d.ideliveryid = p.ideliveryid "
    "where p.iofferspaceid = 0 and p.ideliveryid <> 0 and d.imessagetype is not null",
    "space_null_channel_from_delivery": f"select 1 from {P} as p join {{s}}.nmsdelivery as d on d.ideliveryid = p.ideliveryid "
    "where p.iofferspaceid is null and p.ideliveryid <> 0 and d.imessagetype is not null",
    "space_orphan_channel_from_delivery": f"select 1 from {P} as p join {{s}}.nmsdelivery as d on d.ideliveryid = p.ideliveryid "
    "where p.iofferspaceid not in (select iofferspaceid from {s}.nmsofferspace) and p.ideliveryid <> 0",
    "space_with_null_channel": f"select 1 from {P} as p join {{s}}.nmsofferspace as s on s.iofferspaceid = p.iofferspaceid "
    "where s.ichannel is null and p.iofferspaceid <> 0",
    "space_with_channel_not_in_enumeration": f"select 1 from {P} as p join {{s}}.nmsofferspace as s on s.iofferspaceid = p.iofferspaceid "
    f"where s.ichannel not in {CHANNEL_CODES}",
    "delivery_type_not_in_enumeration_via_fallback": f"select 1 from {P} as p join {{s}}.nmsdelivery as d on d.ideliveryid = p.ideliveryid "
    f"where p.iofferspaceid = 0 and d.imessagetype not in {CHANNEL_CODES}",
    "delivery_type_null_via_fallback": f"select 1 from {P} as p join {{s}}.nmsdelivery as d on d.ideliveryid = p.ideliveryid "
    "where p.iofferspaceid = 0 and p.ideliveryid <> 0 and d.imessagetype is null",
    "no_space_and_no_delivery_channel_minus_1": f"select 1 from {P} where coalesce(iofferspaceid, 0) = 0 and coalesce(ideliveryid, 0) = 0 "
    "and ipropositionid <> 0",
    **{
        f"status_{code}": f"select 1 from {P} where istatus = {code} and ipropositionid <> 0"
        for code in (0, 1, 2, 3, 4, 5, 99)
    },
    "status_null": f"select 1 from {P} where istatus is null",
    "status_unknown": f"select 1 from {P} where istatus not in (0, 1, 2, 3, 4, 5, 99)",
    "tsevent_null": f"select 1 from {P} where tsevent is null",
    "tsevent_within_an_hour_of_utc_midnight": f"select 1 from {P} where (tsevent at time zone 'UTC')::time >= '23:00' "
    "or (tsevent at time zone 'UTC')::time < '01:00'",
    "tsevent_date_differs_between_utc_and_paris": f"select 1 from {P} where (tsevent at time zone 'UTC')::date <> (tsevent at time zone 'Europe/Paris')::date",
    "recipient_0": f"select 1 from {P} where irecipientid = 0 and ipropositionid <> 0",
    "recipient_null": f"select 1 from {P} where irecipientid is null",
    "weight_null": f"select 1 from {P} where dweight is null",
    "references_duplicated_offer": f"select 1 from {P} where iofferid in "
    "(select iofferid from {s}.nmsoffer group by 1 having count(*) > 1)",
    "references_duplicated_space": f"select 1 from {P} where iofferspaceid in "
    "(select iofferspaceid from {s}.nmsofferspace group by 1 having count(*) > 1)",
    "references_duplicated_delivery": f"select 1 from {P} where ideliveryid in "
    "(select ideliveryid from {s}.nmsdelivery group by 1 having count(*) > 1)",
}

LOOKUP_CASES = {
    **{
        f"{table}_duplicate_key_different_labels": f"select {key} from {{s}}.{table} group by 1 having count(*) = 2 and count(distinct slabel) = 2"
        for table, key in (("nmsoffer", "iofferid"), ("nmsofferspace", "iofferspaceid"), ("nmsdelivery", "ideliveryid"))
    },
    **{
        f"{table}_null_label": f"select 1 from {{s}}.{table} where slabel is null"
        for table in ("nmsoffer", "nmsofferspace", "nmsdelivery")
    },
    "nmsoffer_null_name": "select 1 from {s}.nmsoffer where sname is null",
}

E = "{s}.{t}"
EVENT_CASES = {
    "duplicate_key_differs_in_status_and_lastmodified": f"select {{k}} from {E} group by 1 "
    "having count(*) = 2 and count(distinct istatus) = 2 and count(distinct tslastmodified) = 2",
    "duplicate_key_newer_copy_inserted_second": f"select {{k}} from {E} group by 1 having count(*) = 2 "
    "and (array_agg(tslastmodified order by ctid))[2] > (array_agg(tslastmodified order by ctid))[1]",
    "duplicate_key_newer_copy_inserted_first": f"select {{k}} from {E} group by 1 having count(*) = 2 "
    "and (array_agg(tslastmodified order by ctid))[1] > (array_agg(tslastmodified order by ctid))[2]",
    "duplicate_key_one_copy_null_lastmodified": f"select {{k}} from {E} group by 1 having count(*) = 2 and count(tslastmodified) = 1",
    "type_null": f"select 1 from {E} where stype is null",
    "type_empty": f"select 1 from {E} where stype = ''",
    "type_blank": f"select 1 from {E} where stype <> '' and btrim(stype) = ''",
    "type_padded": f"select 1 from {E} where stype = ' ORDER_CONFIRMATION '",
    **{f"status_{code}": f"select 1 from {E} where istatus = {code} and {{k}} <> 0" for code in range(7)},
    "status_null": f"select 1 from {E} where istatus is null",
    "status_unknown": f"select 1 from {E} where istatus not between 0 and 6",
    "channel_null": f"select 1 from {E} where iwishedchannel is null",
    "channel_unknown": f"select 1 from {E} where iwishedchannel not in {CHANNEL_CODES}",
    "created_null": f"select 1 from {E} where tscreated is null and tsprocessed is null",
    "processed_without_created": f"select 1 from {E} where tscreated is null and tsprocessed is not null",
    "created_within_an_hour_of_utc_midnight": f"select 1 from {E} where (tscreated at time zone 'UTC')::time >= '23:00' "
    "or (tscreated at time zone 'UTC')::time < '01:00'",
}


@pytest.mark.parametrize("case", PROPOSITION_CASES)
def test_proposition_edge_case_present(pg_conn: connection, tiny: str, case: str) -> None:
    assert _scalar(pg_conn, f"select exists ({PROPOSITION_CASES[case]})", s=tiny), case


@pytest.mark.parametrize("case", LOOKUP_CASES)
def test_lookup_edge_case_present(pg_conn: connection, tiny: str, case: str) -> None:
    assert _scalar(pg_conn, f"select exists ({LOOKUP_CASES[case]})", s=tiny), case


@pytest.mark.parametrize("table", EVENT_TABLES)
@pytest.mark.parametrize("case", EVENT_CASES)
def test_event_edge_case_present(pg_conn: connection, tiny: str, table: str, case: str) -> None:
    assert _scalar(pg_conn, f"select exists ({EVENT_CASES[case]})", s=tiny, t=table, k=EVENT_TABLES[table]), case


def test_execution_tables_have_overlapping_key_values(pg_conn: connection, tiny: str) -> None:
    assert _scalar(
        pg_conn,
        "select exists (select 1 from {s}.nmsrtevent as r join {s}.nmsbatchevent as b "
        "on b.ibatcheventid = r.irteventid where r.irteventid <> 0)",
        s=tiny,
    )


# --- cardinalities at the default size ---------------------------------------------------


def test_lookup_cardinalities(pg_conn: connection, default: str) -> None:
    assert _scalar(pg_conn, "select count(distinct iofferid) from {s}.nmsoffer where iofferid <> 0", s=default) == 300
    assert (
        _scalar(
            pg_conn, "select count(distinct iofferspaceid) from {s}.nmsofferspace where iofferspaceid <> 0", s=default
        )
        == 32
    )
    assert (
        _scalar(pg_conn, "select count(distinct ideliveryid) from {s}.nmsdelivery where ideliveryid <> 0", s=default)
        == 3002
    )
    # channels of the spaces: email, SMS, app channels, web-ish ones
    channels = _scalar(pg_conn, "select array_agg(distinct ichannel) from {s}.nmsofferspace", s=default)
    assert {0, 1, 2, 20, 25, 40, 41, 42, 120} <= set(channels)
    shares = dict(
        _rows(
            pg_conn,
            "select imessagetype, count(*)::float / sum(count(*)) over () from {s}.nmsdelivery group by 1",
            s=default,
        )
    )
    assert shares[0] > 0.6 and 0.1 < shares[1] < 0.3
    assert all(shares[code] > 0.01 for code in (40, 41, 42))


def test_proposition_cardinalities(pg_conn: connection, default: str) -> None:
    q = (
        "select count(*), count(distinct irecipientid), max(irecipientid), "
        "count(*) filter (where ideliveryid = 0)::float / count(*), "
        "min((tsevent at time zone 'UTC')::date), max((tsevent at time zone 'UTC')::date), "
        "min(dweight), max(dweight), min(irank), max(irank), count(distinct iofferid), "
        "count(distinct ideliveryid) from {s}.nmspropositionrcp where ipropositionid <> 0"
    )
    (rows, recipients, max_recipient, inbound, first, last, min_w, max_w, min_rank, max_rank, offers, deliveries) = (
        _rows(pg_conn, q, s=default)[0]
    )
    assert rows > 20_000 and recipients < rows / 3 and max_recipient <= 4000
    assert 0.2 < inbound < 0.3
    assert str(first) == "2025-01-01" and str(last) == "2026-12-31"
    assert min_w > 0 and max_w <= 100 and (min_rank, max_rank) == (1, 5)
    assert offers > 250 and deliveries > 1000


def test_deliveries_run_a_few_days_with_a_handful_of_offers(pg_conn: connection, default: str) -> None:
    span, offers, avg_offers = _rows(
        pg_conn,
        """
        select max(days), max(offers), avg(offers) from (
            select ideliveryid,
                   max((tsevent at time zone 'UTC')::date) - min((tsevent at time zone 'UTC')::date) as days,
                   count(distinct iofferid) as offers
            from {s}.nmspropositionrcp
            where ideliveryid between 1 and 3000 and iofferid between 1 and 300
            group by 1) as d""",
        s=default,
    )[0]
    assert span <= 6 and offers <= 7 and 2 <= avg_offers <= 6


def test_weekly_rhythm(pg_conn: connection, default: str) -> None:
    per_dow = dict(
        _rows(
            pg_conn,
            "select extract(isodow from tsevent at time zone 'UTC')::int, count(*) "
            "from {s}.nmspropositionrcp group by 1",
            s=default,
        )
    )
    assert per_dow[2] > 1.5 * per_dow[7] and per_dow[4] > 1.5 * per_dow[6]


def test_event_cardinalities(pg_conn: connection, default: str) -> None:
    types, processed, email_sms, app_channels = _rows(
        pg_conn,
        """
        select count(distinct btrim(stype)),
               count(*) filter (where istatus = 2)::float / count(*),
               count(*) filter (where iwishedchannel in (0, 1))::float / count(*),
               array_agg(distinct iwishedchannel) filter (where iwishedchannel between 40 and 42)
        from {s}.nmseventhisto""",
        s=default,
    )[0]
    assert types >= 30 and processed > 0.85 and email_sms > 0.85 and sorted(app_channels) == [40, 41, 42]
    median, longest = _rows(
        pg_conn,
        """
        select percentile_cont(0.5) within group (order by extract(epoch from tsprocessed - tscreated)),
               max(extract(epoch from tsprocessed - tscreated))
        from {s}.nmseventhisto where istatus = 2""",
        s=default,
    )[0]
    assert 0 < median < 10 and longest < 600
    for table in EVENT_TABLES:
        assert (
            _scalar(
                pg_conn,
                "select count(*) from {s}.{t} where istatus in (0, 1, 4, 5) and tsprocessed is not null",
                s=default,
                t=table,
            )
            == 0
        ), table

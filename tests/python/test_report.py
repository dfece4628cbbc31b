"""The report: built from the published aggregates only, its numbers equal theirs,
its charts exist, an empty period gives a clear panel, bad input a clear error."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql

from campaign_cubes.report import ReportError, build_report, data
from support import CubesBuild, write_thrift_profile

PROPS = "agg_nmspropositionrcp_full"
EVENTS = "agg_messagecenter_full"
ERRORS = ("ignored", "deliveryFailed", "routingFailed", "tooOld")


@dataclass
class Table:
    body: list[list[tuple[str, str | None]]] = field(default_factory=list)
    foot: list[list[tuple[str, str | None]]] = field(default_factory=list)


class ReportPage(HTMLParser):
    """The tables (cell text and data-value), images, KPIs and no-data panels of a report."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tables: dict[str, Table] = {}
        self.images: list[str] = []
        self.no_data = 0
        self.kpis: dict[str, str] = {}
        self._table: Table | None = None
        self._in_foot = False
        self._in_rows = False
        self._cell: list[str] | None = None
        self._value: str | None = None
        self._kpi: str | None = None
        self._kpi_value = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table":
            self._table = self.tables.setdefault(attributes["id"] or "", Table())
        elif tag in ("tbody", "tfoot"):
            self._in_rows, self._in_foot = True, tag == "tfoot"
        elif tag == "tr" and self._table is not None and self._in_rows:
            (self._table.foot if self._in_foot else self._table.body).append([])
        elif tag == "td" and self._table is not None and self._in_rows:
            self._cell, self._value = [], attributes.get("data-value")
        elif tag == "img":
            self.images.append(attributes["src"] or "")
        elif tag == "div" and "no-data" in (attributes.get("class") or ""):
            self.no_data += 1
        elif tag == "div" and attributes.get("data-kpi"):
            self._kpi = attributes["data-kpi"]
        elif tag == "div" and attributes.get("class") == "kpi-value" and self._kpi:
            self._kpi_value = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._table is not None and self._cell is not None:
            rows = self._table.foot if self._in_foot else self._table.body
            rows[-1].append(("".join(self._cell), self._value))
            self._cell = None
        elif tag == "table":
            self._table, self._in_foot, self._in_rows = None, False, False
        elif tag == "div" and self._kpi_value:
            self._kpi_value, self._kpi = False, None

    def handle_data(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)
        if self._kpi_value and self._kpi:
            self.kpis[self._kpi] = self.kpis.get(self._kpi, "") + text


def number(cell: tuple[str, str | None]) -> int:
    shown, value = cell
    assert value is not None and shown.replace(",", "") == value, cell
    return int(value)


def share(cell: tuple[str, str | None]) -> float | None:
    shown, value = cell
    if not value:
        assert shown == "–"
        return None
    assert shown == f"{float(value):.1%}", cell
    return float(value)


def query(pg_conn: Any, text: str, schema: str, *params: Any) -> list[tuple[Any, ...]]:
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL(text).format(
                props=sql.Identifier(schema, PROPS),
                events=sql.Identifier(schema, EVENTS),
                staging=sql.Identifier(f"{schema}_staging"),
            ),
            params,
        )
        return [tuple(plain(value) for value in row) for row in cursor.fetchall()]


def plain(value: Any) -> Any:
    """numeric sums as int (or float), so they compare with the report's numbers."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


@pytest.fixture(scope="module")
def report(default_build: CubesBuild, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportPage]:
    page = build_report(default_build.schema, tmp_path_factory.mktemp("report"), None, None)
    return page, ReportPage(page.read_text())


@pytest.mark.slow
def test_offer_tables_equal_the_aggregate(
    report: tuple[Path, ReportPage], pg_conn: Any, default_build: CubesBuild
) -> None:
    _, page = report
    expected = {
        row[0]: row[1:]
        for row in query(
            pg_conn,
            """
        select channel_label, sum(propositions), sum(presented), sum(accepted), sum(rejected), sum(control_group)
        from {props} where proposition_date is not null group by 1""",
            default_build.schema,
        )
    }
    shown = page.tables["offers-by-channel"]
    assert len(shown.body) == len(expected)
    for row in shown.body:
        assert tuple(number(c) for c in row[1:6]) == tuple(expected[row[0][0]]), row[0][0]
        p, a, r = expected[row[0][0]][1:4]
        assert share(row[6]) == pytest.approx(a / (p + a + r) if p + a + r else None)
    (total,) = query(
        pg_conn,
        """select sum(propositions), sum(presented), sum(accepted), sum(rejected),
        sum(control_group) from {props} where proposition_date is not null""",
        default_build.schema,
    )
    for table in ("offers-by-channel", "offers-by-offer", "offers-by-delivery"):
        assert tuple(number(c) for c in page.tables[table].foot[0][-6:-1]) == total, table
        # shown rows (the top ones and the "others" row) add up to the total
        assert sum(number(row[-6]) for row in page.tables[table].body) == total[0], table


@pytest.mark.slow
def test_offer_and_delivery_rows_equal_the_aggregate(
    report: tuple[Path, ReportPage], pg_conn: Any, default_build: CubesBuild
) -> None:
    _, page = report
    for table, key in (("offers-by-offer", "offer_id"), ("offers-by-delivery", "delivery_id")):
        expected = {
            row[0]: row[1:]
            for row in query(
                pg_conn,
                f"""
            select {key}, sum(propositions), sum(presented), sum(accepted), sum(rejected), sum(control_group)
            from {{props}} where proposition_date is not null group by 1""",
                default_build.schema,
            )
        }
        rows = [row for row in page.tables[table].body if row[1][0]]  # not the "others" row
        assert rows and len(rows) < len(expected)
        for row in rows:
            assert tuple(number(c) for c in row[-6:-1]) == tuple(expected[int(row[1][0])]), (table, row[0][0])


@pytest.mark.slow
def test_message_center_tables_equal_the_aggregate(
    report: tuple[Path, ReportPage], pg_conn: Any, default_build: CubesBuild
) -> None:
    _, page = report
    expected = {
        row[0]: row[1:]
        for row in query(
            pg_conn,
            """
        select event_type, sum(events),
               coalesce(sum(events) filter (where status_name = 'processed'), 0),
               coalesce(sum(events) filter (where status_name = any(%s)), 0)
        from {events} where event_date is not null group by 1""",
            default_build.schema,
            list(ERRORS),
        )
    }
    for row in page.tables["events-by-type"].body:
        if row[0][0] in expected:
            events, sent, errors = expected[row[0][0]]
            assert (number(row[1]), number(row[2]), number(row[4])) == (events, sent, errors), row[0][0]
            assert share(row[3]) == pytest.approx(sent / events)
            assert share(row[5]) == pytest.approx(errors / events)
    footer = page.tables["events-by-type"].foot[0]
    assert number(footer[1]) == sum(v[0] for v in expected.values())
    by_status = dict(
        query(
            pg_conn,
            """select status_name, sum(events) from {events}
        where event_date is not null group by 1""",
            default_build.schema,
        )
    )
    total = sum(by_status.values())
    for row in page.tables["errors-by-kind"].body:
        name = re.search(r"\((\w+)\)$", row[0][0]) or re.match(r"(\w+)$", row[0][0])
        assert name and name.group(1) in ERRORS
        assert number(row[1]) == by_status.get(name.group(1), 0)
        assert share(row[2]) == pytest.approx(by_status.get(name.group(1), 0) / total)
    assert number(page.tables["errors-by-kind"].foot[0][1]) == sum(by_status.get(e, 0) for e in ERRORS)


@pytest.mark.slow
def test_processing_times_are_exact_weighted_means(
    report: tuple[Path, ReportPage], pg_conn: Any, default_build: CubesBuild
) -> None:
    """The weighted mean of the aggregate's means equals the mean over the events themselves."""
    _, page = report
    labels = dict(query(pg_conn, "select distinct channel_code, channel_label from {events}", default_build.schema))
    direct = query(
        pg_conn,
        """
        select channel_code, avg(extract(epoch from processed_at - created_at)),
               max(extract(epoch from processed_at - created_at))
        from {staging}.int_message_center_events__unioned
        where event_date is not null and processed_at is not null and created_at is not null group by 1""",
        default_build.schema,
    )
    expected = {labels[code]: (float(mean), float(most)) for code, mean, most in direct}
    rows = page.tables["processing-by-channel"].body
    assert {row[0][0] for row in rows if row[3][1]} == set(expected)
    for row in rows:
        if row[3][1]:
            mean, most = expected[row[0][0]]
            assert float(row[3][1]) == pytest.approx(mean, rel=1e-9), row[0][0]
            assert float(row[5][1] or "nan") == pytest.approx(most, rel=1e-9), row[0][0]


@pytest.mark.slow
def test_kpis_and_charts(report: tuple[Path, ReportPage], pg_conn: Any, default_build: CubesBuild) -> None:
    path, page = report
    (propositions,) = query(
        pg_conn, "select sum(propositions) from {props} where proposition_date is not null", default_build.schema
    )[0]
    assert page.kpis["propositions"] == f"{propositions:,}"
    assert len(page.images) == 6 and page.no_data == 0
    for src in page.images:
        chart = path.parent / src
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src
    assert sorted(p.name for p in (path.parent / "charts").glob("*.png")) == sorted(Path(s).name for s in page.images)
    text = path.read_text()
    assert "http://" not in text and "https://" not in text  # self-contained: nothing to fetch
    assert "not a dimension" in text and "space" in text  # says why there is no space breakdown


@pytest.mark.slow
def test_empty_period_gives_no_data_panels(default_build: CubesBuild, tmp_path: Path) -> None:
    users = tmp_path / "charts" / "kept-by-a-user.png"
    users.parent.mkdir()
    users.write_bytes(b"not ours")
    drawn = ReportPage(build_report(default_build.schema, tmp_path, None, None).read_text()).images
    assert drawn
    page = ReportPage(build_report(default_build.schema, tmp_path, date(1990, 1, 1), date(1990, 1, 31)).read_text())
    assert page.no_data == 4 and page.images == [] and page.tables == {}
    assert page.kpis["propositions"] == "0" and page.kpis["acceptance_rate"] == "–"
    assert not [src for src in drawn if (tmp_path / src).exists()]  # no chart left over from another report
    assert users.read_bytes() == b"not ours"  # and nothing removed that a report did not write


def test_out_must_be_a_folder(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    with pytest.raises(ReportError, match="is a file, not a folder"):  # refused before connecting
        build_report("cubes_test_not_read", a_file, None, None)
    assert a_file.read_text() == "mine"


@pytest.mark.slow
def test_a_short_period_is_shown_per_day(default_build: CubesBuild, pg_conn: Any, tmp_path: Path) -> None:
    (last,) = query(pg_conn, "select max(event_date) from {events}", default_build.schema)[0]
    start = date.fromordinal(last.toordinal() - 13)
    path = build_report(default_build.schema, tmp_path, start, last)
    page = ReportPage(path.read_text())
    assert "(14 days, shown per day)" in path.read_text()
    (events,) = query(
        pg_conn,
        "select sum(events) from {events} where event_date between %s and %s",
        default_build.schema,
        start,
        last,
    )[0]
    assert number(page.tables["events-by-type"].foot[0][1]) == events
    assert len(page.images) == 6


@pytest.mark.slow
def test_bad_input_is_a_clear_error(default_build: CubesBuild, tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="is after"):
        build_report(default_build.schema, tmp_path, date(2026, 2, 1), date(2026, 1, 1))
    with pytest.raises(ReportError, match="does not exist: build the aggregates first"):
        build_report("cubes_test_nothing_here", tmp_path, None, None)


def test_a_spark_target_not_in_session_mode_is_a_clear_error(
    pg_conn: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report reads Spark in session mode only; on a Thrift target it says so in one line."""
    monkeypatch.setenv("DBT_PROFILES_DIR", str(write_thrift_profile(tmp_path)))
    with pytest.raises(ReportError, match="read Spark in session mode only; this target's method is thrift"):
        build_report("cubes", tmp_path / "out", None, None)


def test_buckets_follow_the_aggregates_date_levels() -> None:
    assert data.bucket_for(92) == "day" and data.bucket_for(93) == "week" and data.bucket_for(400) == "month"
    week = data.Period(date(2026, 3, 4), date(2026, 3, 20), "week")
    assert data.buckets(week) == [date(2026, 3, 2), date(2026, 3, 9), date(2026, 3, 16)]
    month = data.Period(date(2025, 12, 31), date(2026, 2, 1), "month")
    assert data.buckets(month) == [date(2025, 12, 1), date(2026, 1, 1), date(2026, 2, 1)]
    assert data.buckets(data.Period(None, None, "day")) == []


def test_error_statuses_come_from_the_seed(tmp_path: Path) -> None:
    assert set(data.error_statuses()) == set(ERRORS)
    seed = tmp_path / "statuses.csv"
    seed.write_text("status_code,status_name,status_label,is_error,is_confirmed\n9,bounced,Bounced,true,false\n")
    assert data.error_statuses(seed) == ("bounced",)
    assert data.error_statuses(tmp_path / "missing.csv") == data.DEFAULT_ERROR_STATUSES


def test_durations_read_in_the_best_unit() -> None:
    from campaign_cubes.report.charts import format_duration

    assert [format_duration(s) for s in (42.3, 300, 82916)] == ["42.3 s", "5.0 min", "23.0 h"]


HOSTILE = '<script>alert(1)</script><img src=x onerror="alert(2)">'


class Markup(HTMLParser):
    """The tags and attributes a browser would build from a page."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [name for name, _ in attrs]


def assert_inert(page: str) -> None:
    """`HOSTILE` shows as text: no script, no extra image, no event handler."""
    markup = Markup(page)
    assert "script" not in markup.tags and "onerror" not in markup.attributes
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert all(not src.startswith("x") for src in ReportPage(page).images)


@pytest.mark.slow
def test_hostile_labels_from_the_database_are_escaped(
    default_build: CubesBuild, pg_conn: Any, scratch_schema: str, tmp_path: Path
) -> None:
    """Event types and labels are data from Campaign: the page shows them as text, never as markup."""
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("create schema {}").format(sql.Identifier(scratch_schema)))
        for table in (PROPS, EVENTS):
            cursor.execute(
                sql.SQL("create table {} as select * from {}").format(
                    sql.Identifier(scratch_schema, table), sql.Identifier(default_build.schema, table)
                )
            )
        cursor.execute(
            sql.SQL("update {} set event_type = %s where event_type = (select max(event_type) from {})").format(
                sql.Identifier(scratch_schema, EVENTS), sql.Identifier(scratch_schema, EVENTS)
            ),
            (HOSTILE,),
        )
        cursor.execute(
            sql.SQL("update {} set channel_label = %s").format(sql.Identifier(scratch_schema, PROPS)), (HOSTILE,)
        )
    text = build_report(scratch_schema, tmp_path, None, None).read_text()
    assert_inert(text)
    page = ReportPage(text)
    assert HOSTILE in [row[0][0] for row in page.tables["events-by-type"].body]
    assert {row[0][0] for row in page.tables["offers-by-channel"].body} == {HOSTILE}


def test_templates_escape_every_value_they_receive() -> None:
    """Whatever a section hands its template (cells, captions, tooltips, figures, panels) is escaped."""
    from campaign_cubes.report import html

    cell = html.Cell(HOSTILE, value=HOSTILE, css="label", title=HOSTILE)
    values = {
        "empty": None,
        "trend": html.Figure(HOSTILE, HOSTILE, HOSTILE, 1, 1),
        "channels": html.Table(HOSTILE, HOSTILE, (HOSTILE,), [[cell]], [[cell]]),
        "acceptance": None,
        "none_answered": html.NoData(HOSTILE, None, None),
        "offers": html.Table("o", "o", ("o",), []),
        "deliveries": html.Table("d", "d", ("d",), []),
    }
    period = data.Period(None, None, "day")
    page = html.render(
        "page.html",
        title=HOSTILE,
        nav=[(HOSTILE, HOSTILE)],
        period=period,
        schema=HOSTILE,
        generated=HOSTILE,
        undated_propositions=0,
        undated_events=0,
        kpis=[html.Kpi(HOSTILE, HOSTILE, HOSTILE, HOSTILE)],
        sections=[html.Section("offers.html", values)],
    )
    assert_inert(page)
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 15

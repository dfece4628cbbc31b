"""The cubes on Spark (session mode), compared cell by cell with PostgreSQL's builds of the same demo data.

One Spark session for the whole module: dbt runs in this process (dbtRunner), so that
dbt-spark's session mode reuses this session instead of starting a JVM per dbt command
(the embedded Derby metastore also admits one JVM at a time). Warehouse and metastore
live in a temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.dbt import profiles_dir
from campaign_cubes.export import cell, postgres_rows, sort_key, spark_rows
from support import CubesBuild

AGGREGATES = ("agg_nmspropositionrcp_full", "agg_messagecenter_full")
# A sum of doubles: its last bit depends on the order of the additions (docs/spark.md).
ORDER_DEPENDENT = {"total_weight"}


def missing_runtime() -> str | None:
    """Why the Spark path cannot run here, or None."""
    for module in ("pyspark", "dbt.adapters.spark"):
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (the spark extra)"
    if shutil.which("java") is None:
        return "no Java runtime (Debian: default-jre-headless)"
    if not Path(os.environ.get("CAMPAIGN_CUBES_JDBC_JAR", "/usr/share/java/postgresql.jar")).exists():
        return "no PostgreSQL JDBC driver (Debian: libpostgresql-jdbc-java)"
    return None


REASON = missing_runtime()
if REASON is not None:
    print(f"\ntest_spark: skipped: {REASON}")
pytestmark = pytest.mark.skipif(REASON is not None, reason=str(REASON))


class Spark:
    """The module's Spark session and the dbt commands run in it."""

    def __init__(self, session: Any, work_dir: Path) -> None:
        self.session, self.work_dir = session, work_dir

    def dbt(self, args: list[str], schema: str) -> bool:
        from dbt.cli.main import dbtRunner

        os.environ["CAMPAIGN_CUBES_SCHEMA"] = schema
        result = dbtRunner().invoke(
            [
                *args,
                "--target",
                "spark",
                "--project-dir",
                str(PROJECT_ROOT),
                "--profiles-dir",
                str(profiles_dir()),
                "--target-path",
                str(self.work_dir / "target"),
                "--log-path",
                str(self.work_dir / "logs"),
                "--quiet",
            ]
        )
        return bool(result.success)

    def build(self, source: str, schema: str, timezone: str, mode: str, **extra: Any) -> bool:
        dbt_vars = {"campaign_schema": source, "reporting_timezone": timezone, "message_center_source": mode, **extra}
        return self.dbt(["build", "--exclude", "test_type:unit", "--vars", json.dumps(dbt_vars)], schema)

    def rows(self, schema: str, table: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        return spark_rows(schema, table, self.session)


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Spark]:
    from campaign_cubes.export import spark_session
    from campaign_cubes.spark_dbt import keep_profile_ansi

    folder = tmp_path_factory.mktemp("spark")
    # not DBT_TARGET: the PostgreSQL builds this module compares with run dbt meanwhile
    saved = {name: os.environ.get(name) for name in ("CAMPAIGN_CUBES_SPARK_DIR", "CAMPAIGN_CUBES_SCHEMA")}
    os.environ["CAMPAIGN_CUBES_SPARK_DIR"] = str(folder)
    keep_profile_ansi()
    session = spark_session("spark")
    yield Spark(session, folder)
    session.stop()
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="module")
def landed(spark: Spark, demo_source: str) -> str:
    """The demo Campaign tables landed into the Spark database of the same name."""
    from campaign_cubes.land import landing_args

    with psycopg2.connect() as conn:
        args = landing_args(conn, demo_source)
    assert spark.dbt([*args, "--vars", json.dumps({"campaign_schema": demo_source})], "cubes_spark_land")
    return demo_source


def assert_same_cells(spark: Spark, spark_schema: str, build: CubesBuild) -> None:
    for table in AGGREGATES:
        pg_headers, pg_rows = postgres_rows(build.schema, table)
        headers, rows = spark.rows(spark_schema, table)
        assert headers == pg_headers
        assert len(rows) == len(pg_rows) > 0
        for expected, got in zip(sorted(pg_rows, key=sort_key), sorted(rows, key=sort_key), strict=True):
            for name, want, have in zip(headers, expected, got, strict=True):
                if name in ORDER_DEPENDENT and want is not None and have is not None:
                    assert math.isclose(want, have, rel_tol=1e-12), (table, name, expected, got)
                else:
                    assert cell(want) == cell(have), (table, name, expected, got)


def test_ansi_mode_is_on(spark: Spark) -> None:
    from pyspark.errors import ArithmeticException

    assert spark.session.conf.get("spark.sql.ansi.enabled") == "true"
    with pytest.raises(ArithmeticException, match="DIVIDE_BY_ZERO"):
        spark.session.sql("select 1 / 0").collect()


@pytest.fixture(scope="module")
def built_on_spark(spark: Spark, landed: str) -> Callable[[CubesBuild], str]:
    """`built_on_spark(build)`: the Spark database holding the same build as PostgreSQL's `build`."""
    built: dict[str, str] = {}

    def build_like(build: CubesBuild) -> str:
        if build.mode not in built:
            schema = f"cubes_spark_{build.mode}"
            assert spark.build(landed, schema, build.timezone, build.mode)
            built[build.mode] = schema
        return built[build.mode]

    return build_like


@pytest.mark.parametrize("build_name", ["default_build", "execution_build"])
def test_aggregates_equal_postgresql(
    spark: Spark, built_on_spark: Callable[[CubesBuild], str], build_name: str, request: pytest.FixtureRequest
) -> None:
    # UTC and the control instance's archive; New York and an execution instance's queues
    build: CubesBuild = request.getfixturevalue(build_name)
    assert_same_cells(spark, built_on_spark(build), build)


def test_the_report_equals_postgresqls(
    built_on_spark: Callable[[CubesBuild], str],
    default_build: CubesBuild,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from campaign_cubes.report import build_report

    def page(schema: str, folder: str) -> str:
        text = build_report(schema, tmp_path / folder, None, None).read_text()
        text = re.sub(r"schema <code>[^<]*</code> · generated [^<]*", "", text)
        # means of doubles: their last digits depend on the order of the additions
        return re.sub(r'data-value="([^"]+)"', lambda value: f'data-value="{float(value[1]):.12g}"', text)

    expected = page(default_build.schema, "postgresql")
    schema = built_on_spark(default_build)
    monkeypatch.setenv("DBT_TARGET", "spark")
    assert page(schema, "spark") == expected
    charts = sorted(path.name for path in (tmp_path / "spark" / "charts").glob("*.png"))
    assert charts == sorted(path.name for path in (tmp_path / "postgresql" / "charts").glob("*.png"))


def test_refused_audit_keeps_the_published_version(spark: Spark, landed: str) -> None:
    schema = "cubes_spark_refusal"
    assert spark.build(landed, schema, "UTC", "eventhisto")
    before = spark.rows(schema, "agg_messagecenter_full")
    # the execution queues hold half the archive's events (TEST_DEMO_SIZE): below 0.9 of them, refused
    assert not spark.build(landed, schema, "UTC", "execution", publish_min_volume_ratio=0.9)
    assert spark.rows(schema, "agg_messagecenter_full") == before
    rejected = spark.session.sql(f"show tables in {schema}_audit like 'agg_messagecenter_full__rejected'").collect()
    assert len(rejected) == 1


def test_readers_never_fail_during_rebuilds(spark: Spark, landed: str) -> None:
    schema = "cubes_spark_readers"
    assert spark.build(landed, schema, "UTC", "eventhisto")
    from pyspark.errors import PySparkException

    reader_session = spark.session.newSession()
    stop, results, errors = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            try:
                query = f"select sum(propositions), count(*) from {schema}.agg_nmspropositionrcp_full"
                results.append(tuple(reader_session.sql(query).collect()[0]))
            except PySparkException as problem:  # every failure is the finding
                errors.append(str(problem).splitlines()[0])

    reader = threading.Thread(target=read)
    reader.start()
    try:
        dbt_vars = json.dumps({"campaign_schema": landed})
        for _ in range(3):
            assert spark.dbt(["run", "--select", "agg_nmspropositionrcp_full", "--vars", dbt_vars], schema)
    finally:
        stop.set()
        reader.join()
    assert errors == []
    assert len(results) > 10 and len(set(results)) == 1


def test_stale_facts_are_refused_and_the_view_kept(spark: Spark, landed: str) -> None:
    schema = "cubes_spark_stale"
    assert spark.build(landed, schema, "UTC", "eventhisto", stale_source_after="36500 days")
    before = spark.rows(schema, "agg_messagecenter_full")
    newest = f"select max(tslastmodified) from {landed}.nmseventhisto where tslastmodified <= current_timestamp()"
    age = spark.session.sql(f"select unix_timestamp() - unix_timestamp(({newest}))").collect()[0][0]
    time.sleep(max(0, 70 - age))  # ages only grow: past a minute, a 1-minute threshold must refuse
    assert not spark.build(landed, schema, "UTC", "eventhisto", stale_source_after="1 minutes")
    assert spark.rows(schema, "agg_messagecenter_full") == before
    log = spark.session.sql(
        f"select outcome, findings from {schema}_audit.publication_log"
        " where model = 'agg_messageCenter_full' order by recorded_at desc limit 1"
    ).collect()[0]
    assert log["outcome"] == "stale_source"
    assert "the newest tslastmodified up to the run's start" in log["findings"]
    assert "(nmseventhisto: " in log["findings"]

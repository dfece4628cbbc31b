"""bench/run.py at a tiny size: its floor gives the project's rows, and it prints what it promises.

The data gets the edge cases the demo generator does not make, so that the floor is
checked on them too: rows without a key (each counts), and lookups that carry
tslastmodified, where the latest copy of a duplicated key must win over the label
order.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql

from bench import run as bench
from campaign_cubes.demo import load_demo

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "cubes_test_bench"  # conftest drops cubes_test* schemas at the end
SIZE = 2_000
SOURCE = bench.source_schema(PREFIX, SIZE)
PUBLISHED = f"{PREFIX}_cubes"
FLOOR = f"{PREFIX}_floor"


def _edge_cases(pg_conn: Any) -> None:
    def run(statement: str) -> None:
        with pg_conn.cursor() as cursor:
            cursor.execute(sql.SQL(statement).format(s=sql.Identifier(SOURCE)))

    # Two identical propositions and two events without a key: both count.
    for _ in range(2):
        run(
            "insert into {s}.nmspropositionrcp select null, iinteractionid, iofferid, iofferspaceid, irecipientid,"
            " ideliveryid, istatus, tsevent, tslastmodified, dweight, irank"
            " from {s}.nmspropositionrcp where ipropositionid = 10 limit 1"
        )
    run(
        "insert into {s}.nmseventhisto select null, stype, istatus, iwishedchannel, ideliveryid, tscreated,"
        " tsprocessing, tsprocessed, tslastmodified, sexternalid, sorigin, semail, smobilephone, slanguage,"
        " scountrycode, mdata from {s}.nmseventhisto where bieventhistoid = 10 limit 1"
    )
    run("insert into {s}.nmseventhisto select * from {s}.nmseventhisto where bieventhistoid is null")
    # Lookups with tslastmodified: the copy whose label sorts last is the latest.
    for table, key in (("nmsoffer", "iofferid"), ("nmsofferspace", "iofferspaceid"), ("nmsdelivery", "ideliveryid")):
        run(f"alter table {{s}}.{table} add column tslastmodified timestamptz")
        run(
            f"update {{s}}.{table} set tslastmodified = timestamptz '2026-01-01 00:00+00'"
            f" + (case when {key} in (2, 5, 7) then length(slabel) else 0 end) * interval '1 day'"
        )


@pytest.fixture(scope="module")
def bench_run(pg_conn: Any) -> subprocess.CompletedProcess[str]:
    load_demo(pg_conn, SOURCE, bench.demo_size(SIZE), seed=1)
    _edge_cases(pg_conn)
    bench.mark_loaded(pg_conn, SOURCE, SIZE, seed=1)
    return subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", str(SIZE), "--schema-prefix", PREFIX, "--queries"],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=dict(os.environ),
    )


@pytest.mark.slow
def test_floor_equals_the_project_and_the_last_line_is_the_ratio(bench_run: subprocess.CompletedProcess[str]) -> None:
    assert bench_run.returncode == 0, bench_run.stdout + bench_run.stderr
    lines = bench_run.stdout.splitlines()
    assert f"{SOURCE}: nmspropositionrcp" in bench_run.stdout and "(reused)" in bench_run.stdout
    assert re.fullmatch(r"ratio_vs_floor=\d+\.\d\d", lines[-1]), lines[-1]
    row = next(line for line in lines if line.split()[:1] == ["2k"])
    _, _, floor_s, project_s, ratio, _, peak_mib, _, _ = row.split()
    assert float(floor_s) > 0 and float(project_s) > float(floor_s)
    assert float(lines[-1].split("=")[1]) == float(ratio)
    # the server runs on this machine: the CPU seconds of both sides are read, the floor's too
    assert re.fullmatch(r"cpu_ratio_vs_floor=\d+\.\d\d", lines[-2]), lines[-2]
    assert re.search(r"CPU seconds .*: floor \d+\.\d \(server\); steady run \d+\.\d = server", bench_run.stdout)
    assert 10 < float(peak_mib) < 2048  # orchestrate.py + dbt, measured
    # --queries: each aggregate's query alone beside the floor's statement for its cube
    for relation in bench.AGGREGATES:
        assert re.search(
            rf"2k {relation} query alone: \d+\.\d s, \d+\.\d CPU s; the floor's statement \d+\.\d s,"
            r" \d+\.\d CPU s; cpu ratio (\d+\.\d\d|nan)",  # nan: the floor's took less than a clock tick
            bench_run.stdout,
        ), relation
    for setting in ("max_parallel_workers_per_gather=", "work_mem=", "shared_buffers=", "jit=", "cores"):
        assert setting in bench_run.stdout


@pytest.mark.slow
def test_the_comparison_catches_a_changed_cell_but_not_float_noise(
    bench_run: subprocess.CompletedProcess[str], pg_conn: Any
) -> None:
    assert bench_run.returncode == 0, bench_run.stdout + bench_run.stderr
    assert bench.compare(pg_conn, FLOOR, PUBLISHED) == []
    table = sql.Identifier(FLOOR, "agg_nmspropositionrcp_full")
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("update {} set total_weight = total_weight * (1 + 1e-12)").format(table))
    assert bench.compare(pg_conn, FLOOR, PUBLISHED) == []
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("update {} set total_weight = total_weight * (1 + 1e-6) where total_weight > 0").format(table)
        )
    assert "rows differ in total_weight" in " ".join(bench.compare(pg_conn, FLOOR, PUBLISHED))
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("update {} set recipients = recipients + 1 where offer_id = 7").format(table))
    assert "only in the floor" in " ".join(bench.compare(pg_conn, FLOOR, PUBLISHED))


@pytest.mark.slow
def test_primary_keys_give_campaign_shaped_tables_the_floor_agrees_with(pg_conn: Any) -> None:
    prefix = f"{PREFIX}_pk"
    arguments = ["--sizes", str(SIZE), "--schema-prefix", prefix, "--primary-keys", "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    source = bench.source_schema(prefix, SIZE, primary_keys=True)
    assert f"{source}: nmspropositionrcp" in done.stdout
    with pg_conn.cursor() as cursor:
        for table, (key, _) in bench.FACT_KEYS.items():
            cursor.execute(
                sql.SQL("select count(*) - count(distinct {k}), count(*) filter (where {k} is null) from {t}").format(
                    k=sql.Identifier(key), t=sql.Identifier(source, table)
                )
            )
            assert cursor.fetchone() == (0, 0), table
            cursor.execute(
                "select count(*) from pg_index where indrelid = %s::regclass and indisunique",
                (sql.Identifier(source, table).as_string(cursor),),
            )
            assert cursor.fetchone() == (1,), table
        cursor.execute(
            "select indexrelid::regclass::text, indisprimary from pg_index where indrelid = %s::regclass",
            (sql.Identifier(source, "nmspropositionrcp").as_string(cursor),),
        )
        assert cursor.fetchall() == [(f"{source}.nmspropositionrcp_id", False)]


def test_tree_memory_counts_a_child_process() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; x = bytearray(64 << 20); time.sleep(30)"])
    try:
        for _ in range(100):
            if bench.tree_rss_kib(os.getpid()) - bench._rss_kib(os.getpid()) > 60 << 10:
                break
            time.sleep(0.05)
        assert bench.tree_rss_kib(os.getpid()) - bench._rss_kib(os.getpid()) > 60 << 10
    finally:
        child.kill()
        child.wait()


def test_sizes_are_parsed() -> None:
    assert bench.parse_sizes("1000000,10_000_000") == [1_000_000, 10_000_000]
    with pytest.raises(argparse.ArgumentTypeError):
        bench.parse_sizes("ten")
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--sizes", "0"])


def test_the_time_before_the_first_node_is_the_connection() -> None:
    # as dbt writes run_results.json: written when the run ends, each node's timings
    payload = {
        "elapsed_time": 30.0,
        "metadata": {"generated_at": "2026-12-01T10:00:30.000000Z"},
        "results": [
            {"timing": [{"name": "compile", "started_at": "2026-12-01T10:00:22.500000Z"}]},
            {"timing": [{"name": "compile", "started_at": "2026-12-01T10:00:25.000000Z"}]},
        ],
    }
    assert bench._before_first_node(payload) == pytest.approx(22.5)
    assert bench._before_first_node({"elapsed_time": 30.0, "results": []}) == 0.0


def test_spark_takes_no_topology(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.main(["--target", "spark", "--topology", "fdw"]) == bench.EXIT_USAGE
    assert "--topology is PostgreSQL's" in capsys.readouterr().err
    assert bench.main(["--target", "spark", "--queries"]) == bench.EXIT_USAGE
    assert "--queries times PostgreSQL statements" in capsys.readouterr().err

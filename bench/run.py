#!/usr/bin/env python3
"""Benchmark: the project's scheduled run against the bare-SQL floor, at several sizes.

For each size N (N propositions and N Message Center events, N // 10 execution
events), on the same server and in one run:

1. the Campaign tables are generated into ``<prefix>_campaign_<N>`` (reused when
   that schema already holds this size and seed; ``--reload`` forces it); with
   ``--primary-keys``, into ``<prefix>_campaign_pk_<N>``, the fact tables then
   keyed as Campaign keys them (``add_primary_keys``);
2. the project's working schemas (``<prefix>_cubes``, ``_staging``, ``_audit``) are
   dropped, and ``orchestrate.py run`` of both jobs is timed end to end: the
   *first* run (nothing published yet; it also warms the cache);
3. the floor (``bench/floor.sql``: one bare ``create table ... as select ... group
   by`` per aggregate, straight from the Campaign tables) is timed;
4. ``orchestrate.py run`` is timed again: the *steady* run, as every scheduled run
   after the first (the published tables exist; the audit compares volumes);
5. steps 3 and 4 are repeated ``--repeat`` times in all; the best time of each counts;
6. the floor's tables are compared with the published ones, row for row (EXCEPT ALL
   both ways on every column; double precision columns within a relative 1e-9):
   a difference fails the benchmark (exit 1), as the floor would not be a floor.

It prints the server settings that matter, one table row per size, the CPU seconds
each side cost (the server's, read from /proc, and for the project those of
orchestrate.py and dbt too: far less moved by other work than wall seconds), a line
``cpu_ratio_vs_floor=<x.xx>`` and last a line ``ratio_vs_floor=<x.xx>``: steady run
/ floor at the largest size.

With ``--target spark`` (docs/spark.md) the same steps run on Spark, in a warehouse
and metastore of each size's own (``--spark-dir``/<N>, emptied first): before step 2,
``orchestrate.py --target spark land`` is timed (the copy of every Campaign table,
with each table's seconds and JDBC partitions); steps 2 and 4 are
``orchestrate.py --target spark run`` (their dbt start-up, the JVM's and metastore's
start, then dbt's nodes); for step 6 Spark's published aggregates are first copied
into PostgreSQL tables shaped as the floor's (``<prefix>_spark``, through Spark's
JDBC writer, in a process of its own) and compared there. The floor stays PostgreSQL's.

The orchestrator's peak memory is the largest sum of the resident sizes of
orchestrate.py and all its descendants (dbt), sampled every 50 ms from /proc.
PostgreSQL's own memory is the server's, not the orchestrator's, and is not in it.

Usage:
    .venv/bin/python bench/run.py                        # 1 M and 10 M
    .venv/bin/python bench/run.py --sizes 1000000        # one size
    .venv/bin/python bench/run.py --sizes 100000000      # 100 M (about 35 GB of tables, plus sort files)
    .venv/bin/python bench/run.py --sizes 10000000 --primary-keys   # keyed as Campaign keys its tables
    .venv/bin/python bench/run.py --sizes 1000000 --target spark --repeat 1      # on Spark (local[2])

Without PGHOST it runs against the project-local server (started if needed).
Exit codes: 0 done, the floor agrees; 1 the floor and the project disagree or the
project's run failed; 2 bad usage; 3 the database could not be reached.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

import psycopg2  # noqa: E402
from psycopg2 import sql  # noqa: E402
from psycopg2.extensions import connection  # noqa: E402

from campaign_cubes import localpg  # noqa: E402
from campaign_cubes.demo import DemoRefused, DemoSize, load_demo, modified_shift  # noqa: E402
from campaign_cubes.jobs import JOBS_WORK_DIR  # noqa: E402
from campaign_cubes.land import WORK_DIR as LAND_WORK_DIR  # noqa: E402
from campaign_cubes.land import password_file  # noqa: E402

FLOOR_SQL = Path(__file__).resolve().parent / "floor.sql"
SEEDS = PROJECT_ROOT / "seeds"
ORCHESTRATE = PROJECT_ROOT / "orchestrate.py"
JOBS = ("agg_messageCenter_full", "agg_nmspropositionrcp_full")
# The published relations (lower case) and their grain.
AGGREGATES = {
    "agg_nmspropositionrcp_full": ("proposition_date", "channel_code", "delivery_id", "offer_id"),
    "agg_messagecenter_full": ("event_date", "channel_code", "status_code", "event_type"),
}
FLOAT_TOLERANCE = 1e-9  # relative; sums of doubles depend on the order of addition
SAMPLE_SECONDS = 0.05
BENCH_MARK = "campaign-cubes bench load"
SPARK_DIR = "CAMPAIGN_CUBES_SPARK_DIR"  # the warehouse and metastore of the Spark target (profiles.yml)
LAND_LOG = LAND_WORK_DIR / "logs" / "console.log"
# Tables reloaded once their newest tslastmodified would be a day from the jobs' 3-day gate.
STALE_MARGIN_SECONDS = 2 * 86400
SERVER_SETTINGS = (
    "max_parallel_workers_per_gather",
    "max_parallel_workers",
    "work_mem",
    "hash_mem_multiplier",
    "shared_buffers",
    "effective_cache_size",
    "jit",
)

EXIT_OK, EXIT_MISMATCH, EXIT_USAGE, EXIT_DATABASE = 0, 1, 2, 3


class BenchFailure(RuntimeError):
    """The benchmark cannot vouch for its numbers: a failed run or a floor that disagrees."""


# --- memory of a process tree -------------------------------------------------


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found.extend(int(child) for child in handle.read().split())
    except OSError:
        pass  # the process ended meanwhile
    return found


def _rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(root: int) -> int:
    """Resident memory of `root` and all its descendants, in KiB."""
    total, pending, seen = 0, [root], set()
    while pending:
        pid = pending.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _rss_kib(pid)
        pending.extend(_children(pid))
    return total


class PeakMemory(threading.Thread):
    """Samples a process tree's resident memory until stopped; keeps the maximum."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, tree_rss_kib(self.pid))
            self._stop_event.wait(SAMPLE_SECONDS)

    def stop(self) -> int:
        self._stop_event.set()
        self.join()
        return self.peak_kib


# --- CPU time of the server and of orchestrate.py's processes ----------------------
# Wall seconds on a shared machine move with other work; the CPU seconds a run costs
# move far less, so the benchmark prints both.

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_ticks(pid: int, reaped: bool = False) -> int:
    """User + system ticks of `pid`; with `reaped`, of the children it has waited for too."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rpartition(")")[2].split()  # fields[0] is stat's field 3
    except OSError:
        return 0  # the process ended meanwhile
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])  # stat's fields 14 - 17
    return utime + stime + (cutime + cstime if reaped else 0)


def server_pid(conn: connection) -> int | None:
    """The server's main process, when it runs on this machine and its pid file can be read."""
    with conn.cursor() as cur:
        cur.execute("select current_setting('data_directory', true), current_setting('port')")
        data_dir, port = cur.fetchone()  # type: ignore[misc]
    try:
        lines = Path(data_dir or "", "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None  # another machine's server, or a login that may not read the setting
    # the pid file names the port: a file of another cluster at the same path is not this server
    return pid if len(lines) > 3 and lines[3].strip() == port and Path(f"/proc/{pid}").exists() else None


def server_cpu_seconds(pid: int | None) -> float:
    """CPU seconds the server has used so far: its main process, every process it has
    reaped (backends, parallel workers) and those still running; NaN when unknown."""
    if pid is None:
        return float("nan")
    return (_cpu_ticks(pid, reaped=True) + sum(_cpu_ticks(child) for child in _children(pid))) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU seconds of this process's waited-for children and their own (orchestrate.py and dbt)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --- the data ------------------------------------------------------------------


def source_schema(prefix: str, size: int, primary_keys: bool = False) -> str:
    return f"{prefix}_campaign_{'pk_' if primary_keys else ''}{size}"


def demo_size(size: int) -> DemoSize:
    return DemoSize(propositions=size, events=size, execution_events=size // 10)


def _loaded_mark(conn: connection, schema: str) -> dict[str, object] | None:
    with conn.cursor() as cur:
        cur.execute(
            "select obj_description(c.oid, 'pg_class') from pg_class as c"
            " join pg_namespace as n on n.oid = c.relnamespace"
            " where n.nspname = %s and c.relname = 'nmspropositionrcp'",
            (schema,),
        )
        row = cur.fetchone()
    if row is None or not row[0] or not row[0].startswith(BENCH_MARK + " "):
        return None
    return json.loads(row[0][len(BENCH_MARK) + 1 :])


def _fact_counts(conn: connection, schema: str) -> dict[str, int]:
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("select (select count(*) from {}), (select count(*) from {})").format(
                sql.Identifier(schema, "nmspropositionrcp"), sql.Identifier(schema, "nmseventhisto")
            )
        )
        propositions, events = cur.fetchone()
    return {"nmspropositionrcp": int(propositions), "nmseventhisto": int(events)}


def mark_loaded(conn: connection, schema: str, size: int, seed: int) -> dict[str, int]:
    """Record in `schema` which size and seed it holds, with its fact counts and the
    load's shift of tslastmodified (campaign_cubes.demo.modified_shift); returns the counts."""
    counts = _fact_counts(conn, schema)
    mark = {"size": size, "seed": seed, "counts": counts, "modified_shift": modified_shift(datetime.now(UTC))}
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("comment on table {} is {}").format(
                sql.Identifier(schema, "nmspropositionrcp"), sql.Literal(BENCH_MARK + " " + json.dumps(mark))
            )
        )
    return counts


def still_fresh(mark: dict[str, object]) -> bool:
    """Whether tables loaded with `mark` still pass the jobs' freshness gate (3 days by
    default): their newest tslastmodified moves with the load date only after 2026."""
    shift = mark.get("modified_shift", 0)
    return isinstance(shift, int) and modified_shift(datetime.now(UTC)) - shift < STALE_MARGIN_SECONDS


def ensure_loaded(
    conn: connection, schema: str, size: int, seed: int, reload: bool, primary_keys: bool = False
) -> tuple[dict[str, int], float | None]:
    """The Campaign tables of this size and seed in `schema`; returns (fact counts, seconds or None if reused)."""
    mark = None if reload else _loaded_mark(conn, schema)
    if mark is not None and mark.get("size") == size and mark.get("seed") == seed and still_fresh(mark):
        counts = _fact_counts(conn, schema)
        if counts == mark.get("counts"):
            return counts, None
    started = time.monotonic()
    # views on the tables make the loader empty them in place: keys declared earlier would refuse its copies
    drop_primary_keys(conn, schema)
    load_demo(conn, schema, demo_size(size), seed=seed)
    if primary_keys:
        add_primary_keys(conn, schema)
    seconds = time.monotonic() - started
    return mark_loaded(conn, schema, size, seed), seconds


# The fact tables with their key and the order that picks the copy of a repeated key to keep.
FACT_KEYS = {
    "nmspropositionrcp": ("ipropositionid", "tsevent"),
    "nmseventhisto": ("bieventhistoid", "tscreated"),
    "nmsrtevent": ("irteventid", "tscreated"),
    "nmsbatchevent": ("ibatcheventid", "tscreated"),
}


def drop_primary_keys(conn: connection, schema: str) -> None:
    """The unique index and primary keys add_primary_keys declares, dropped where present."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop index if exists {}").format(sql.Identifier(schema, "nmspropositionrcp_id")))
        for table, (key, _) in FACT_KEYS.items():
            cur.execute("select to_regclass(%s)", (sql.Identifier(schema, table).as_string(cur),))
            if cur.fetchone()[0] is not None:  # type: ignore[index]
                cur.execute(
                    sql.SQL("alter table {t} drop constraint if exists {c}, alter column {k} drop not null").format(
                        t=sql.Identifier(schema, table), c=sql.Identifier(f"{table}_pkey"), k=sql.Identifier(key)
                    )
                )


def add_primary_keys(conn: connection, schema: str) -> None:
    """The fact tables keyed as Campaign keys them: every key once and not NULL (the demo's
    rows without a key and older copies of a repeated key deleted, the latest copy kept), a
    unique index on the propositions' key named as Campaign names it, primary keys on the
    event tables (so that both forms are exercised). Then vacuumed: no dead rows left."""
    for table, (key, last_order) in FACT_KEYS.items():
        params = {"t": sql.Identifier(schema, table), "k": sql.Identifier(key), "o": sql.Identifier(last_order)}
        with conn.cursor() as cur:
            cur.execute(sql.SQL("delete from {t} where {k} is null").format(**params))
            cur.execute(
                sql.SQL(
                    "delete from {t} where ctid = any(array("
                    " select ctid from ("
                    "  select ctid, row_number() over ("
                    "   partition by {k} order by tslastmodified desc nulls last, istatus desc nulls last,"
                    "   {o} desc nulls last) as copy"
                    "  from {t} where {k} in (select {k} from {t} group by {k} having count(*) > 1)"
                    " ) as copies where copy > 1))"
                ).format(**params)
            )
            if table == "nmspropositionrcp":
                cur.execute(sql.SQL("alter table {t} alter column {k} set not null").format(**params))
                cur.execute(
                    sql.SQL("create unique index {i} on {t} ({k})").format(i=sql.Identifier(f"{table}_id"), **params)
                )
            else:
                cur.execute(sql.SQL("alter table {t} add primary key ({k})").format(**params))
            cur.execute(sql.SQL("vacuum analyze {t}").format(**params))


# --- the floor -----------------------------------------------------------------


def _seed_values(name: str, columns: Sequence[str]) -> sql.Composable:
    with (SEEDS / f"{name}.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    return sql.SQL(", ").join(
        sql.SQL("({})").format(
            sql.SQL(", ").join([sql.Literal(int(row[columns[0]]))] + [sql.Literal(row[c]) for c in columns[1:]])
        )
        for row in rows
    )


def _modified_or_null(conn: connection, schema: str, table: str) -> sql.Composable:
    with conn.cursor() as cur:
        cur.execute(
            "select 1 from information_schema.columns"
            " where table_schema = %s and table_name = %s and column_name = 'tslastmodified'",
            (schema, table),
        )
        present = cur.fetchone() is not None
    return sql.Identifier("tslastmodified") if present else sql.SQL("null::timestamptz")


def floor_statements(conn: connection, source: str, target: str, timezone: str) -> list[sql.Composed]:
    text = FLOOR_SQL.read_text(encoding="utf-8")
    params = {
        "source": sql.Identifier(source),
        "target": sql.Identifier(target),
        "timezone": sql.Literal(timezone),
        "channels": _seed_values("campaign_channels", ("channel_code", "channel_label")),
        "event_statuses": _seed_values("campaign_event_statuses", ("status_code", "status_name", "status_label")),
        "offer_modified": _modified_or_null(conn, source, "nmsoffer"),
        "space_modified": _modified_or_null(conn, source, "nmsofferspace"),
        "delivery_modified": _modified_or_null(conn, source, "nmsdelivery"),
    }
    parts = text.split("\n-- statement\n")[1:]
    return [sql.SQL(part).format(**params) for part in parts]


def run_floor(conn: connection, statements: list[sql.Composed], target: str) -> list[float]:
    """Seconds of each of the floor's statements (the target schema is recreated first, untimed)."""
    seconds = []
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(target)))
        cur.execute(sql.SQL("create schema {}").format(sql.Identifier(target)))
        for statement in statements:
            started = time.monotonic()
            cur.execute(statement)
            seconds.append(time.monotonic() - started)
    return seconds


@dataclass(frozen=True)
class Timed:
    seconds: float
    cpu: float  # the server's CPU seconds (NaN: unknown)


def time_statement(conn: connection, server: int | None, statement: sql.Composable) -> Timed:
    with conn.cursor() as cur:
        before, started = server_cpu_seconds(server), time.monotonic()
        cur.execute(statement)
        return Timed(time.monotonic() - started, server_cpu_seconds(server) - before)


def _least_costly(timings: list[Timed]) -> Timed:
    known = [timed for timed in timings if timed.cpu == timed.cpu]  # NaN: the server is elsewhere
    return min(known, key=lambda t: t.cpu) if known else min(timings, key=lambda t: t.seconds)


def job_target(job: str) -> Path:
    """dbt's target folder for the runs of a job (campaign_cubes.dbt.Invocation)."""
    return JOBS_WORK_DIR / job / "target"


def compiled_query(relation: str, published: str) -> str:
    """The SELECT dbt compiled for an aggregate in the last run of its job, which read `published`."""
    job = next(job for job in JOBS if job.lower() == relation)
    path = job_target(job).joinpath("compiled", "campaign_cubes", "models", "marts")
    text = (path / f"{job}.sql").read_text(encoding="utf-8")
    if f'"{published}_staging".' not in text:
        raise BenchFailure(f"{path / job}.sql was compiled by another run (not for {published}); run the bench again")
    return text


def queries_alone(
    conn: connection, server: int | None, statements: list[sql.Composed], published: str, scratch: str, repeat: int
) -> dict[str, tuple[Timed, Timed]]:
    """Per aggregate, its query alone (as the last steady run compiled it, read through the staging
    views) and the floor's statement for the same cube, alternated `repeat` times into `scratch`:
    the least costly of each. Without dbt, tests, audit or publication: what the per-row work costs."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop schema if exists {s} cascade; create schema {s}").format(s=sql.Identifier(scratch)))
    timings: dict[str, tuple[Timed, Timed]] = {}
    for relation, floor_statement in zip(AGGREGATES, statements, strict=True):
        query = sql.SQL("create table {} as ").format(sql.Identifier(scratch, relation + "__query")) + sql.SQL(
            compiled_query(relation, published)
        )
        queries, floors = [], []
        for _ in range(repeat):
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("drop table if exists {}, {}").format(
                        sql.Identifier(scratch, relation), sql.Identifier(scratch, relation + "__query")
                    )
                )
            floors.append(time_statement(conn, server, floor_statement))
            queries.append(time_statement(conn, server, query))
        timings[relation] = (_least_costly(queries), _least_costly(floors))
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop schema {} cascade").format(sql.Identifier(scratch)))
    return timings


# --- the project -----------------------------------------------------------------


@dataclass
class ProjectRun:
    seconds: float
    peak_kib: int
    jobs: dict[str, dict[str, float]] = field(default_factory=dict)
    server_cpu: float = float("nan")  # CPU seconds of the PostgreSQL server during the run
    client_cpu: float = float("nan")  # of orchestrate.py and its processes (dbt; on Spark, the JVM)

    @property
    def cpu(self) -> float:
        return self.server_cpu + self.client_cpu


def _job_breakdown(job: str, source: str, wall: float | None) -> dict[str, float]:
    """Where a job's time went (seconds): its wall time, and the split from its run_results.json
    unless another orchestrate.py run overwrote that file meanwhile."""
    path = job_target(job) / "run_results.json"
    known = {"wall": wall} if wall is not None else {}
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError):
        return known
    if (payload.get("args", {}).get("vars") or {}).get("campaign_schema") != source:
        return known  # another orchestrate.py run (a test suite?) wrote it meanwhile
    split = {
        "wall": wall or 0.0,
        "dbt_elapsed": float(payload.get("elapsed_time") or 0.0),
        "model": 0.0,
        "tests": 0.0,
        "other": 0.0,
        "opening": _before_first_node(payload),
    }
    for result in payload.get("results", []):
        kind, _, name = [*result["unique_id"].split("."), "", ""][:3]
        seconds = float(result.get("execution_time") or 0.0)
        if kind == "model" and name.lower() in AGGREGATES:
            split["model"] += seconds
        elif kind in ("test", "unit_test"):
            split["tests"] += seconds
        else:
            split["other"] += seconds
    return split


def _before_first_node(payload: dict[str, object]) -> float:
    """Seconds of dbt's elapsed time before its first node started: the connection (on Spark,
    the JVM and its metastore start then). run_results.json is written when the run ends."""
    results, metadata = payload.get("results"), payload.get("metadata")
    starts = [
        timing["started_at"]
        for result in (results if isinstance(results, list) else [])
        for timing in result.get("timing", [])
        if timing.get("started_at")
    ]
    if not starts or not isinstance(metadata, dict) or not metadata.get("generated_at"):
        return 0.0
    ended, first = datetime.fromisoformat(metadata["generated_at"]), datetime.fromisoformat(min(starts))
    return max(0.0, float(payload.get("elapsed_time") or 0.0) - (ended - first).total_seconds())  # type: ignore[arg-type]


def run_orchestrate(command: list[str], env: dict[str, str], log_file: Path) -> tuple[float, int, str]:
    """`orchestrate.py <command>` timed end to end: (seconds, peak KiB of its process tree, its output).
    Its output is appended to `log_file`; BenchFailure unless it exits 0."""
    output = log_file.with_suffix(".last")
    with output.open("wb") as sink:
        started = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, str(ORCHESTRATE), *command],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            cwd=PROJECT_ROOT,
        )
        sampler = PeakMemory(process.pid)
        sampler.start()
        code = process.wait()
        seconds = time.monotonic() - started
        peak = sampler.stop()
    text = output.read_text(errors="replace")
    settings = " ".join(f"{name}={value}" for name, value in env.items())
    with log_file.open("a") as log:
        log.write(f"\n=== orchestrate.py {' '.join(command)} ({settings}): exit {code} in {seconds:.1f} s\n{text}")
    if code != 0:
        verb = command[-3]  # every command ends with --vars <JSON>
        raise BenchFailure(f"orchestrate.py {verb} exited {code}; its output is in {log_file}")
    return seconds, peak, text


def run_project(
    source: str,
    published: str,
    timezone: str,
    log_file: Path,
    topology_env: dict[str, str] | None = None,
    server: int | None = None,
) -> ProjectRun:
    """`orchestrate.py run` of both jobs; on Spark when `topology_env` names CAMPAIGN_CUBES_SPARK_DIR.
    `server`: the PostgreSQL server's pid, whose CPU time the run is charged."""
    dbt_vars = json.dumps({"campaign_schema": source, "reporting_timezone": timezone})
    env = {"CAMPAIGN_CUBES_SCHEMA": published, **(topology_env or {})}
    target = ["--target", "spark"] if SPARK_DIR in env else []
    server_before, client_before = server_cpu_seconds(server), children_cpu_seconds()
    seconds, peak, text = run_orchestrate([*target, "run", "--vars", dbt_vars], env, log_file)
    server_cpu, client_cpu = server_cpu_seconds(server) - server_before, children_cpu_seconds() - client_before
    walls = {
        job: float(m.group(1))
        for job in JOBS
        for m in [re.search(re.escape(job) + r": success in ([0-9.]+) s", text)]
        if m
    }
    return ProjectRun(
        seconds=seconds,
        peak_kib=peak,
        jobs={job: _job_breakdown(job, source, walls.get(job)) for job in JOBS},
        server_cpu=server_cpu,
        client_cpu=client_cpu,
    )


def drop_project_schemas(conn: connection, published: str) -> None:
    with conn.cursor() as cur:
        for suffix in ("", "_staging", "_audit", "_campaign"):
            cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(published + suffix)))


# --- the separate analytics database topology (--topology fdw) ----------------------


def analytics_database(conn: connection, prefix: str) -> str:
    """A database of its own on the same server for the cubes (created once, then reused)."""
    name = f"{prefix}_analytics"
    with conn.cursor() as cur:
        cur.execute("select count(*) from pg_database where datname = %s", (name,))
        if not cur.fetchone()[0]:  # type: ignore[index]
            cur.execute(sql.SQL("create database {}").format(sql.Identifier(name)))
    return name


def fdw_env(conn: connection, analytics: str) -> dict[str, str]:
    """The cubes in `analytics`, the Campaign tables read from this connection's database via postgres_fdw."""
    info = conn.info
    dsn = psycopg2.extensions.make_dsn(host=info.host, port=info.port, dbname=info.dbname, user=info.user)
    env = {"PGDATABASE": analytics, "CAMPAIGN_SOURCE_DSN": dsn}
    if os.environ.get("PGPASSWORD"):
        env["CAMPAIGN_SOURCE_PASSWORD"] = os.environ["PGPASSWORD"]
    return env


# --- the Spark target (--target spark) -------------------------------------------------


@dataclass
class Landing:
    seconds: float
    rows: int  # of all the Campaign tables landed
    tables: list[tuple[str, int, int, float]]  # per table: rows, JDBC partitions, seconds of its copy


def spark_env(spark_dir: Path, size: int) -> dict[str, str]:
    """A warehouse and Derby metastore of this size's own, emptied first: nothing is published
    before the first run, and no other JVM holds this metastore (Derby admits one at a time)."""
    folder = spark_dir / str(size)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return {SPARK_DIR: str(folder)}


def land_on_spark(source: str, env: dict[str, str], log_file: Path) -> Landing:
    """`orchestrate.py --target spark land` of `source` into the Spark database of the same name."""
    dbt_vars = json.dumps({"campaign_schema": source})
    seconds, _, text = run_orchestrate(["--target", "spark", "land", "--vars", dbt_vars], env, log_file)
    partitions = {table: int(count) for table, count in re.findall(r"land: (\w+): \d+ rows, (\d+) partitions", text)}
    # macros/land.sql logs each copy's rows and seconds in dbt's console log
    copies = re.findall(r"land: \w+\.(\w+): (\d+) rows in ([0-9.]+) s", LAND_LOG.read_text(errors="replace"))
    tables = [(table, int(rows), partitions.get(table, 1), float(taken)) for table, rows, taken in copies]
    return Landing(seconds, sum(rows for _, rows, _, _ in tables), tables)


def landing_lines(size: int, landing: Landing) -> list[str]:
    copies = sum(taken for _, _, _, taken in landing.tables)
    return [
        f"# {fmt_size(size)}: landed {landing.rows:,} rows in {landing.seconds:.1f} s"
        f" ({landing.rows / landing.seconds:,.0f} rows/s): the copies {copies:.1f} s, start-up and description"
        f" {landing.seconds - copies:.1f} s"
    ] + [
        f"#   {fmt_size(size)} {table}: {rows:,} rows in {taken:.1f} s on {parts} JDBC partition(s),"
        f" {rows / taken / min(parts, os.cpu_count() or 1):,.0f} rows/s per partition running"
        for table, rows, parts, taken in landing.tables
        if rows >= 100_000
    ]


def copy_from_spark(published: str, target: str) -> None:
    """Spark's published aggregates appended to the PostgreSQL tables `target`.<name>, which
    hold the floor's columns (run in a process of its own: bench/run.py starts no JVM)."""
    from campaign_cubes.export import spark_frame, spark_session
    from campaign_cubes.land import jdbc_url

    with psycopg2.connect() as conn:
        url, user = jdbc_url(conn), conn.info.user
        columns = {table: [name for name, _ in _columns(conn, target, table)] for table in AGGREGATES}
    session = spark_session("spark")
    try:
        for table, names in columns.items():
            frame = spark_frame(published, table, session)
            if frame.columns != names:
                raise SystemExit(f"{published}.{table}: columns {frame.columns} on Spark, {names} in the floor")
            properties = {"user": user, "driver": "org.postgresql.Driver"}
            frame.write.jdbc(f"{url}?reWriteBatchedInserts=true", f"{target}.{table}", "append", properties)
    finally:
        session.stop()


def spark_copy(conn: connection, published: str, floor_schema: str, target: str, env: dict[str, str]) -> None:
    """`target` recreated with empty tables shaped as the floor's, then filled from Spark."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(target)))
        cur.execute(sql.SQL("create schema {}").format(sql.Identifier(target)))
        for table in AGGREGATES:
            cur.execute(
                sql.SQL("create table {} (like {})").format(
                    sql.Identifier(target, table), sql.Identifier(floor_schema, table)
                )
            )
    code = "import sys; from bench.run import copy_from_spark; copy_from_spark(*sys.argv[1:])"
    with password_file(conn) as password_env:
        done = subprocess.run(
            [sys.executable, "-c", code, published, target],
            capture_output=True,
            text=True,
            env={**os.environ, **env, **password_env},
            cwd=PROJECT_ROOT,
        )
    if done.returncode != 0:
        raise BenchFailure(f"Spark's aggregates could not be read: {(done.stderr.strip() or '?').splitlines()[-1]}")


# --- the comparison ---------------------------------------------------------------


def _columns(conn: connection, schema: str, table: str) -> list[tuple[str, str]]:
    with conn.cursor() as cur:
        cur.execute(
            "select column_name, data_type from information_schema.columns"
            " where table_schema = %s and table_name = %s order by ordinal_position",
            (schema, table),
        )
        return [(name, kind) for name, kind in cur.fetchall()]


def compare(conn: connection, floor_schema: str, published: str) -> list[str]:
    """Differences between the floor's and the published aggregates; empty when equal."""
    problems: list[str] = []
    for table, grain in AGGREGATES.items():
        ours, theirs = _columns(conn, floor_schema, table), _columns(conn, published, table)
        if ours != theirs:
            problems.append(f"{table}: columns differ: floor {ours} vs published {theirs}")
            continue
        floor_rel, pub_rel = sql.Identifier(floor_schema, table), sql.Identifier(published, table)
        exact = [name for name, kind in ours if kind != "double precision"]
        floats = [name for name, kind in ours if kind == "double precision"]
        exact_list = sql.SQL(", ").join(map(sql.Identifier, exact))
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "select (select count(*) from {a}), (select count(*) from {b}),"
                    " (select count(*) from (select {cols} from {a} except all select {cols} from {b}) as x),"
                    " (select count(*) from (select {cols} from {b} except all select {cols} from {a}) as y)"
                ).format(a=floor_rel, b=pub_rel, cols=exact_list)
            )
            floor_rows, pub_rows, only_floor, only_pub = cur.fetchone()
            if only_floor or only_pub:
                problems.append(
                    f"{table}: {only_floor} rows only in the floor ({floor_rows} rows), "
                    f"{only_pub} only in the published table ({pub_rows} rows)"
                )
                continue
            # the grain is unique: pair the rows on it (NULL dates pair with NULL dates)
            keys = sql.SQL(" and ").join(
                sql.SQL("a.{c} is not distinct from b.{c}").format(c=sql.Identifier(c)) for c in grain
            )
            hash_keys = sql.SQL(" and ").join(
                sql.SQL("coalesce(a.{c}::text, '') = coalesce(b.{c}::text, '')").format(c=sql.Identifier(c))
                for c in grain
            )
            differ = sql.SQL(" or ").join(
                sql.SQL(
                    "not (a.{c} is not distinct from b.{c}"
                    " or abs(a.{c} - b.{c}) <= {tol} * greatest(abs(a.{c}), abs(b.{c})))"
                ).format(c=sql.Identifier(c), tol=sql.Literal(FLOAT_TOLERANCE))
                for c in floats
            )
            cur.execute(
                sql.SQL(
                    "select count(*) filter (where {differ}) from {a} as a join {b} as b on {hash_keys} and {keys}"
                ).format(differ=differ, a=floor_rel, b=pub_rel, hash_keys=hash_keys, keys=keys)
            )
            (float_diffs,) = cur.fetchone()
            if float_diffs:
                problems.append(f"{table}: {float_diffs} rows differ in {', '.join(floats)} beyond {FLOAT_TOLERANCE}")
    return problems


# --- the report ---------------------------------------------------------------------


@dataclass
class SizeResult:
    size: int
    fact_rows: int
    load_seconds: float | None
    first: ProjectRun
    floors: list[list[float]]  # per run: seconds of each floor statement (propositions, events)
    steadies: list[ProjectRun]
    landing: Landing | None = None  # on Spark: the copy of the Campaign tables
    floor_cpus: list[float] = field(default_factory=list)  # per run: the server's CPU seconds

    @property
    def cpu_ratio(self) -> float:
        """CPU seconds of the least costly steady run / of the least costly floor (NaN: unknown)."""
        floor = min(self.floor_cpus, default=float("nan"))
        return min(run.cpu for run in self.steadies) / floor if floor > 0 else float("nan")

    @property
    def floor(self) -> float:
        return min(sum(run) for run in self.floors)

    @property
    def steady(self) -> ProjectRun:
        return min(self.steadies, key=lambda run: run.seconds)

    @property
    def ratio(self) -> float:
        return self.steady.seconds / self.floor


def server_header(conn: connection) -> list[str]:
    with conn.cursor() as cur:
        cur.execute("select version()")
        (version,) = cur.fetchone()
        cur.execute(
            "select name, current_setting(name) from pg_settings where name = any(%s) order by name",
            (list(SERVER_SETTINGS),),
        )
        settings = dict(cur.fetchall())
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    memory = ""
    try:
        with open("/proc/meminfo") as handle:
            total_kib = int(handle.readline().split()[1])
        memory = f", {total_kib / 1024 / 1024:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return [
        f"# server: {version.split(' on ')[0]} ({os.environ.get('PGHOST')}:{os.environ.get('PGPORT', '5432')})",
        "# settings: " + ", ".join(f"{name}={settings.get(name, '?')}" for name in SERVER_SETTINGS),
        f"# machine: {cores} cores ({usable} usable){memory}, load average {load:.2f} at start",
    ]


def fmt_size(size: int) -> str:
    for unit, scale in (("G", 10**9), ("M", 10**6), ("k", 10**3)):
        if size >= scale and size % (scale // 10) == 0:
            value = size / scale
            return f"{value:g}{unit}"
    return str(size)


def table_lines(results: list[SizeResult]) -> list[str]:
    spark = any(r.landing for r in results)
    header = (
        f"{'size':>6} {'fact rows':>11} {'floor s':>8} {'project s':>10} {'ratio':>6} "
        f"{'rows/s':>9} {'peak MiB':>9} {'first s':>8} {'ratio1':>6}"
        + (f" {'land s':>8} {'land rows/s':>11} {'ratioL':>6}" if spark else "")
    )
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{fmt_size(r.size):>6} {r.fact_rows:>11,} {r.floor:>8.2f} {r.steady.seconds:>10.2f} {r.ratio:>6.2f} "
            f"{r.fact_rows / r.steady.seconds:>9,.0f} "
            f"{max(run.peak_kib for run in [r.first, *r.steadies]) / 1024:>9.0f} "
            f"{r.first.seconds:>8.2f} {r.first.seconds / r.floor:>6.2f}"
            + (
                f" {r.landing.seconds:>8.2f} {r.landing.rows / r.landing.seconds:>11,.0f}"
                f" {r.landing.seconds / r.floor:>6.2f}"
                if r.landing
                else ""
            )
        )
    return lines


def breakdown_lines(result: SizeResult) -> list[str]:
    run = result.steady
    lines = []
    for job in JOBS:
        split = run.jobs.get(job, {})
        if "dbt_elapsed" not in split:
            lines.append(
                f"#   {fmt_size(result.size)} {job}: {split.get('wall', float('nan')):.1f} s"
                " (no split: another run overwrote its run_results.json)"
            )
            continue
        lines.append(
            f"#   {fmt_size(result.size)} {job}: {split['wall']:.1f} s = dbt start-up"
            f" {split['wall'] - split['dbt_elapsed']:.1f}"
            + (
                f" + JVM and metastore start {split['opening']:.1f}"
                f" + dbt nodes {split['dbt_elapsed'] - split['opening']:.1f}"
                if result.landing
                else f" + dbt nodes {split['dbt_elapsed']:.1f}"
            )
            + f" (node times on 2 threads: aggregate + audit + publish {split['model']:.1f},"
            f" tests {split['tests']:.1f}, seeds/views/hooks {split['other']:.1f})"
        )
    walls = sum(split.get("wall", 0.0) for split in run.jobs.values())
    lines.append(
        f"#   {fmt_size(result.size)} orchestrate.py itself (start-up, locks, history): {run.seconds - walls:.1f} s"
    )
    return lines


def cpu_line(result: SizeResult) -> str:
    steady = min(result.steadies, key=lambda run: run.cpu)
    return (
        f"#   {fmt_size(result.size)} CPU seconds (less costly runs): floor {min(result.floor_cpus):.1f} (server);"
        f" steady run {steady.cpu:.1f} = server {steady.server_cpu:.1f} + orchestrate.py and dbt"
        f" {steady.client_cpu:.1f}; first run {result.first.cpu:.1f}; cpu ratio {result.cpu_ratio:.2f}"
    )


def query_lines(size: int, timings: dict[str, tuple[Timed, Timed]]) -> list[str]:
    return [
        f"#   {fmt_size(size)} {relation} query alone: {query.seconds:.1f} s, {query.cpu:.1f} CPU s; the floor's"
        f" statement {floor.seconds:.1f} s, {floor.cpu:.1f} CPU s;"
        f" cpu ratio {query.cpu / floor.cpu if floor.cpu > 0 else float('nan'):.2f}"
        for relation, (query, floor) in timings.items()
    ]


# --- main ---------------------------------------------------------------------------


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes takes integers separated by commas, got {text!r}") from None
    if not sizes or any(size < 1 for size in sizes):
        raise argparse.ArgumentTypeError(f"--sizes must be positive integers, got {text!r}")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=[1_000_000, 10_000_000],
        help="comma-separated sizes: N propositions and N events each (default: 1000000,10000000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="floor and steady runs per size; the best of each counts (default: 2)"
    )
    parser.add_argument("--seed", type=int, default=1, help="generator seed (default: 1)")
    parser.add_argument("--reload", action="store_true", help="regenerate the data even if already loaded")
    parser.add_argument(
        "--primary-keys",
        action="store_true",
        help="the fact tables as Campaign creates them: unique keys with a unique index or primary key, no"
        " duplicate copies and no NULL keys (in <prefix>_campaign_pk_<N>)",
    )
    parser.add_argument("--timezone", default="UTC", help="reporting_timezone of both (default: UTC)")
    parser.add_argument(
        "--schema-prefix",
        default="bench",
        help="schemas used: <prefix>_campaign_<N>, <prefix>_cubes(_staging, _audit), <prefix>_floor (default: bench)",
    )
    parser.add_argument(
        "--source-prefix",
        help="the Campaign tables in <source-prefix>_campaign_<N> instead (e.g. another prefix's load, reused"
        " while fresh; loaded there otherwise)",
    )
    parser.add_argument(
        "--topology",
        choices=("in-database", "fdw"),
        default="in-database",
        help="in-database: the cubes in the Campaign tables' database (default); fdw: in a separate database "
        "<prefix>_analytics on the same server, reading the tables through postgres_fdw (CAMPAIGN_SOURCE_DSN); "
        "the floor then reads the same linked tables",
    )
    parser.add_argument(
        "--target",
        choices=("postgres", "spark"),
        default="postgres",
        help="where the cubes are built: postgres (default), or spark (docs/spark.md): the Campaign tables are"
        " landed (timed), both jobs run with orchestrate.py --target spark, Spark's aggregates are copied into"
        " <prefix>_spark to be compared with the floor's",
    )
    parser.add_argument(
        "--spark-dir",
        type=Path,
        default=PROJECT_ROOT / "target" / "bench" / "spark",
        help="with --target spark: <dir>/<N> holds the warehouse and metastore of size N, emptied first"
        " (default: target/bench/spark)",
    )
    parser.add_argument(
        "--queries",
        action="store_true",
        help="also time each aggregate's query alone (as dbt compiled it, no tests, audit or publication) beside"
        " the floor's statement for the same cube, alternated --repeat times (PostgreSQL only)",
    )
    parser.add_argument(
        "--log",
        type=Path,
        default=PROJECT_ROOT / "target" / "bench" / "orchestrate.log",
        help="where orchestrate.py's output goes (default: target/bench/orchestrate.log)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the long demo loads say how far they are, as comments beside the results
    logging.basicConfig(level=logging.INFO, format="# %(asctime)s %(message)s", stream=sys.stderr)
    if args.repeat < 1:
        print("bench: --repeat must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    if args.target == "spark" and args.queries:
        print("bench: --queries times PostgreSQL statements; Spark builds the cubes elsewhere", file=sys.stderr)
        return EXIT_USAGE
    if args.target == "spark" and args.topology != "in-database":
        print("bench: --topology is PostgreSQL's; Spark lands the Campaign tables", file=sys.stderr)
        return EXIT_USAGE
    try:
        os.environ.update(localpg.connection_env())
        conn = psycopg2.connect()
    except (localpg.LocalServerError, psycopg2.OperationalError) as problem:
        print(f"bench: database: {problem}", file=sys.stderr)
        return EXIT_DATABASE
    conn.autocommit = True
    # where the cubes, the floor and the comparison run: this database, or the analytics one
    work, topology_env = conn, None
    if args.topology == "fdw":
        topology_env = fdw_env(conn, analytics_database(conn, args.schema_prefix))
        work = psycopg2.connect(dbname=topology_env["PGDATABASE"])
        work.autocommit = True
    published = f"{args.schema_prefix}_cubes"
    floor_schema = f"{args.schema_prefix}_floor"
    args.log.parent.mkdir(parents=True, exist_ok=True)
    args.log.write_text("")
    for line in server_header(conn):
        print(line, flush=True)
    server = server_pid(conn)
    if server is None:
        print("# CPU seconds: the server's are not readable from here (another machine?): shown as nan", flush=True)
    if args.target == "spark":
        print(f"# target: spark (warehouses and metastores in {args.spark_dir}/<N>)", flush=True)
    else:
        print(
            f"# topology: {args.topology}"
            + (f" (cubes in database {topology_env['PGDATABASE']})" if topology_env else ""),
            flush=True,
        )
    print(
        f"# size N = N propositions + N events (nmseventhisto); best of {args.repeat} for floor and project;"
        f" orchestrate.py output in {args.log}",
        flush=True,
    )
    results: list[SizeResult] = []
    try:
        for size in sorted(set(args.sizes)):
            source = source_schema(args.source_prefix or args.schema_prefix, size, args.primary_keys)
            counts, load_seconds = ensure_loaded(conn, source, size, args.seed, args.reload, args.primary_keys)
            print(
                f"# {fmt_size(size)}: {source}: "
                + ", ".join(f"{t} {n:,}" for t, n in counts.items())
                + (f" (generated in {load_seconds:.1f} s)" if load_seconds is not None else " (reused)"),
                flush=True,
            )
            landing = None
            if args.target == "spark":
                topology_env = spark_env(args.spark_dir, size)
                landing = land_on_spark(source, topology_env, args.log)
                for line in landing_lines(size, landing):
                    print(line, flush=True)
            drop_project_schemas(work, published)
            first = run_project(source, published, args.timezone, args.log, topology_env, server)
            # with fdw the floor reads the tables the first run linked, as the project does
            floor_source = f"{published}_campaign" if args.topology == "fdw" else source
            statements = floor_statements(work, floor_source, floor_schema, args.timezone)
            floors: list[list[float]] = []
            floor_cpus: list[float] = []
            steadies: list[ProjectRun] = []
            for _ in range(args.repeat):
                before = server_cpu_seconds(server)
                floors.append(run_floor(work, statements, floor_schema))
                floor_cpus.append(server_cpu_seconds(server) - before)
                steadies.append(run_project(source, published, args.timezone, args.log, topology_env, server))
            print(
                f"# {fmt_size(size)}: first run {first.seconds:.1f} s ({first.peak_kib / 1024:.0f} MiB); floor "
                + ", ".join(f"{sum(run):.1f} ({' + '.join(f'{s:.1f}' for s in run)})" for run in floors)
                + " s (propositions + events); steady runs "
                + ", ".join(f"{run.seconds:.1f} s ({run.peak_kib / 1024:.0f} MiB)" for run in steadies),
                flush=True,
            )
            compared = published
            if landing is not None and topology_env is not None:
                compared = f"{args.schema_prefix}_spark"
                spark_copy(work, published, floor_schema, compared, topology_env)
            problems = compare(work, floor_schema, compared)
            if problems:
                raise BenchFailure(
                    "the floor and the project disagree at " + fmt_size(size) + ":\n  " + "\n  ".join(problems)
                )
            result = SizeResult(size, sum(counts.values()), load_seconds, first, floors, steadies, landing, floor_cpus)
            results.append(result)
            for line in [*breakdown_lines(result), cpu_line(result)]:
                print(line, flush=True)
            if args.queries:
                scratch = f"{args.schema_prefix}_queries"
                alone = floor_statements(work, floor_source, scratch, args.timezone)
                for line in query_lines(size, queries_alone(work, server, alone, published, scratch, args.repeat)):
                    print(line, flush=True)
    except DemoRefused as refusal:
        print(f"bench: {refusal}", file=sys.stderr)
        return EXIT_USAGE
    except BenchFailure as failure:
        for line in table_lines(results) if results else []:
            print(line)
        print(f"bench: FAILED: {failure}", file=sys.stderr)
        return EXIT_MISMATCH
    finally:
        if work is not conn:
            work.close()
        conn.close()
    print(
        "# floor/project: seconds (best); ratio = project / floor; rows/s = fact rows / project seconds;"
        " peak MiB = orchestrate.py + dbt RSS; first = first run (nothing published yet)"
        + (
            "; land = orchestrate.py --target spark land, rows/s of all the tables landed"
            if args.target == "spark"
            else ""
        )
    )
    for line in table_lines(results):
        print(line)
    print(f"cpu_ratio_vs_floor={results[-1].cpu_ratio:.2f}")  # "nan": the server is not on this machine
    print(f"ratio_vs_floor={results[-1].ratio:.2f}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""orchestrate.py's scheduler as processes: kill -9 and catch-up, busy, status, retries, timeout, hooks.

dbt is replaced by a small script (CAMPAIGN_CUBES_DBT) that sleeps, succeeds or fails
as told and writes run_results.json like dbt; the history and the locks are the real
PostgreSQL ones. test_orchestrate.py runs the busy case with the real dbt.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

ROOT = Path(__file__).resolve().parents[2]
JOB = "agg_messageCenter_full"

FAKE_DBT = textwrap.dedent('''\
    #!{python}
    """Stands in for dbt: FAKE_DBT_PLAN is one action per call (the last repeats)."""
    import json, os, signal, sys, time
    from pathlib import Path

    state = Path(os.environ["FAKE_DBT_DIR"])
    calls = state / "calls"

    def note(line):
        with calls.open("a") as handle:
            handle.write(line + "\\n")

    if sys.argv[1:2] == ["docs"]:  # the docs site, regenerated after a successful scheduled run
        note("docs")
        sys.exit(0)
    started = sum(1 for line in calls.read_text().splitlines() if line.startswith("start")) if calls.exists() else 0
    plan = os.environ.get("FAKE_DBT_PLAN", "ok").split(",")
    action = plan[min(started, len(plan) - 1)]
    note(f"start {{os.getpid()}} {{action}} {{time.time()}}")
    target = Path(sys.argv[sys.argv.index("--target-path") + 1])
    target.mkdir(parents=True, exist_ok=True)

    def results(*nodes):
        payload = {{"results": [{{"unique_id": u, "status": s, "message": m, "failures": None}} for u, s, m in nodes]}}
        (target / "run_results.json").write_text(json.dumps(payload))

    def interrupted(signum, frame):
        note(f"sigint {{os.getpid()}}")
        sys.exit(2)

    signal.signal(signal.SIGINT, interrupted)
    model = ("model.campaign_cubes.agg_messageCenter_full", "success", "SELECT 10")
    if action.startswith("sleep:"):
        time.sleep(float(action.split(":")[1]))
        action = "ok"
    if action == "ok":
        results(model)
        code = 0
    elif action == "fail":
        results(model, ("test.campaign_cubes.unique_agg_messagecenter_full_grain.1a2b", "fail",
                        "Got 2 results, configured to fail if != 0"))
        code = 1
    elif action == "lock":
        results(("model.campaign_cubes.agg_messageCenter_full", "error",
                 "canceling statement due to lock timeout"))
        code = 1
    else:  # exit2: dbt could not even start its work
        print("Encountered an error: could not connect to server: Connection refused")
        code = 2
    note(f"end {{os.getpid()}} {{code}} {{time.time()}}")
    sys.exit(code)
''')


@pytest.fixture
def world(tmp_path: Path, pg_conn: connection) -> Iterator[World]:
    schema = f"cubes_test_cli_{uuid.uuid4().hex[:10]}"
    yield World(tmp_path, schema, pg_conn)
    with pg_conn.cursor() as cursor:
        for name in (schema, f"{schema}_audit"):
            cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


class World:
    """A config file, a fake dbt and a schema of one's own; orchestrate.py started within them."""

    def __init__(self, tmp_path: Path, schema: str, pg_conn: connection) -> None:
        self.dir, self.schema, self.pg_conn = tmp_path, schema, pg_conn
        self.dbt = tmp_path / "dbt"
        self.dbt.write_text(FAKE_DBT.format(python=sys.executable))
        self.dbt.chmod(0o755)
        self.config = tmp_path / "orchestrate.toml"
        self.configure()

    def configure(self, scheduler: str = "retries = 1\nbackoff_seconds = 0.2\ntimeout_seconds = 120\n") -> None:
        self.config.write_text(
            f'timezone = "UTC"\n\n[scheduler]\n{scheduler}\n[jobs.{JOB}]\ncron = "0 3 * * *"\nselector = "{JOB}"\n'
        )

    def env(self, plan: str, **extra: str) -> dict[str, str]:
        return {
            **os.environ,
            "CAMPAIGN_CUBES_SCHEMA": self.schema,
            "CAMPAIGN_CUBES_DBT": str(self.dbt),
            "FAKE_DBT_DIR": str(self.dir),
            "FAKE_DBT_PLAN": plan,
            **extra,
        }

    def start(self, *args: str, plan: str = "ok", **extra: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, str(ROOT / "orchestrate.py"), "--config", str(self.config), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(plan, **extra),
        )

    def run(self, *args: str, plan: str = "ok", **extra: str) -> tuple[int, str]:
        process = self.start(*args, plan=plan, **extra)
        output, _ = process.communicate(timeout=300)
        return process.returncode, output

    def calls(self) -> list[list[str]]:
        path = self.dir / "calls"
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []

    def wait_for_call(self, word: str, count: int = 1, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while sum(1 for call in self.calls() if call[0] == word) < count:
            assert time.monotonic() < deadline, f"fake dbt never said {word!r}: {self.calls()}"
            time.sleep(0.1)

    def rows(self) -> list[dict[str, Any]]:
        with self.pg_conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("select * from {}.scheduler_runs order by run_id").format(
                    sql.Identifier(f"{self.schema}_audit")
                )
            )
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def test_kill_9_mid_run_then_exactly_one_catch_up(world: World) -> None:
    serve = world.start("serve", "--once", plan="sleep:600,ok")
    world.wait_for_call("start")
    code, status = world.run("status")
    assert code == 0, status
    assert "running (run 1)" in status and f"orchestrate.py serve pid {serve.pid}" in status

    serve.send_signal(signal.SIGKILL)
    serve.wait(timeout=30)
    # dbt is not left orphaned: it got SIGINT (to cancel its queries) when its parent died.
    world.wait_for_call("sigint", timeout=30)
    [row] = world.rows()
    assert row["outcome"] == "running" and row["ended_at"] is None

    code, output = world.run("serve", "--once")
    assert code == 0, output
    assert "was ABANDONED: its process died" in output and "catching up slot" in output
    code, again = world.run("serve", "--once")  # the slot is done: nothing more, ever
    assert code == 0 and "run 3" not in again, again
    rows = world.rows()
    assert [(r["outcome"], r["trigger"]) for r in rows] == [("abandoned", "catch-up"), ("success", "catch-up")]
    assert rows[0]["slot"] == rows[1]["slot"] is not None
    # ... and the docs site was regenerated once, after the successful catch-up
    assert [call[0] for call in world.calls()] == ["start", "sigint", "start", "end", "docs"]


def test_two_runs_started_together_one_builds_one_is_busy(world: World) -> None:
    first = world.start("run", JOB, plan="sleep:3")
    second = world.start("run", JOB, plan="sleep:3")
    (out1, _), (out2, _) = first.communicate(timeout=120), second.communicate(timeout=120)
    by_code = {first.returncode: (first, out1), second.returncode: (second, out2)}
    assert sorted(by_code) == [0, 4], out1 + out2
    winner, _ = by_code[0]
    _, busy_output = by_code[4]
    assert "busy: another run holds its lock" in busy_output
    assert f"orchestrate.py run pid {winner.pid}" in busy_output  # who holds it
    assert [call[0] for call in world.calls()] == ["start", "end"]  # one build
    [row] = world.rows()
    assert (row["outcome"], row["slot"], row["trigger"], row["pid"]) == ("success", None, "manual", winner.pid)


def test_runs_of_different_jobs_never_overlap_in_dbt(world: World) -> None:
    world.config.write_text(world.config.read_text() + '\n[jobs.other]\ncron = "0 6 * * *"\nselector = "x"\n')
    first = world.start("run", JOB, plan="sleep:3")
    world.wait_for_call("start")
    second = world.start("run", "other", plan="sleep:3")
    (out1, _), (out2, _) = first.communicate(timeout=120), second.communicate(timeout=120)
    assert (first.returncode, second.returncode) == (0, 0), out1 + out2
    # Different jobs, so neither is busy; but the shared dbt state lock serialises their builds.
    assert [call[0] for call in world.calls()] == ["start", "end", "start", "end"]
    assert "waiting for the dbt state lock" in out2 and f"orchestrate.py run pid {first.pid}" in out2


def test_two_schemas_never_share_a_jobs_work_folder(world: World) -> None:
    """Runs for two published schemas may build the same job at once, but not in one target/ folder."""
    other_schema = f"{world.schema}_b"
    try:
        first = world.start("run", JOB, plan="sleep:3")
        world.wait_for_call("start")
        second = world.start("run", JOB, plan="sleep:3", CAMPAIGN_CUBES_SCHEMA=other_schema)
        (out1, _), (out2, _) = first.communicate(timeout=120), second.communicate(timeout=120)
        assert (first.returncode, second.returncode) == (0, 0), out1 + out2
        assert [call[0] for call in world.calls()] == ["start", "end", "start", "end"]
        assert f"used by orchestrate.py pid {first.pid}" in out2 and f"for schema {world.schema}" in out2
    finally:
        with world.pg_conn.cursor() as cursor:
            cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(f"{other_schema}_audit")))


def test_status_after_runs(world: World) -> None:
    assert world.run("run", plan="ok")[0] == 0
    assert world.run("run", plan="fail")[0] == 1
    code, status = world.run("status", "--limit", "3")
    assert code == 0, status
    lines = status.splitlines()
    assert f"{JOB}: cron '0 3 * * *' in UTC" in lines
    assert any(line.strip().startswith("latest slot") and "not run yet" in line for line in lines)
    assert any(line.strip().startswith("next slot") for line in lines)
    runs = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert runs[0][:2] == ["2", "manual"] and "failed" in runs[0] and "unique_agg_messagecenter_full_grain" in runs[0]
    assert runs[1][:2] == ["1", "manual"] and "success" in runs[1]


def test_transient_failures_retried_then_exhausted(world: World) -> None:
    code, output = world.run("run", plan="exit2,ok")
    assert code == 0, output
    assert "attempt 1 failed transiently" in output and "succeeded (slot manual, 2 attempts)" in output
    code, output = world.run("run", plan="lock")
    assert code == 5, output
    assert "TRANSIENT EXHAUSTED" in output and "lock timeout" in output
    assert [(r["outcome"], r["attempts"], r["exit_code"]) for r in world.rows()] == [
        ("success", 2, 0),
        ("transient_exhausted", 2, 5),
    ]


def test_model_failure_not_retried_and_hooks_called(world: World) -> None:
    received: list[dict[str, Any]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.handle_request, daemon=True).start()
    hook_file = world.dir / "hook.env"
    world.configure(
        f"retries = 3\nbackoff_seconds = 0.2\n"
        f'on_failure = "env | grep ^CUBES_ | sort > {hook_file}"\n'
        f'on_failure_url = "http://127.0.0.1:{server.server_address[1]}/hook"\n'
    )
    try:
        code, output = world.run("run", plan="fail")
    finally:
        server.server_close()
    assert code == 1, output
    [line] = [line for line in output.splitlines() if "FAILED (slot" in line]
    assert "failed nodes: unique_agg_messagecenter_full_grain" in line
    assert len([call for call in world.calls() if call[0] == "start"]) == 1  # not retried
    env = dict(line.split("=", 1) for line in hook_file.read_text().splitlines())
    assert env["CUBES_JOB"] == JOB and env["CUBES_OUTCOME"] == "failed" and env["CUBES_EXIT_CODE"] == "1"
    assert env["CUBES_FAILED_NODES"] == "unique_agg_messagecenter_full_grain" and env["CUBES_SLOT"] == ""
    assert [(p["job"], p["outcome"], p["failed_nodes"]) for p in received] == [
        (JOB, "failed", ["unique_agg_messagecenter_full_grain"])
    ]


def test_timeout_interrupts_dbt_with_sigint(world: World) -> None:
    started = time.monotonic()
    code, output = world.run("run", "--timeout", "3", plan="sleep:600")
    assert code == 6, output
    assert time.monotonic() - started < 60
    assert [call[0] for call in world.calls()] == ["start", "sigint"]  # SIGINT, not SIGKILL
    assert "TIMEOUT" in output
    assert [r["outcome"] for r in world.rows()] == ["timeout"]


def test_sigterm_stops_dbt_and_records_the_interruption(world: World) -> None:
    run = world.start("run", plan="sleep:600")
    world.wait_for_call("start")
    run.send_signal(signal.SIGTERM)
    assert run.wait(timeout=60) == 130
    assert [call[0] for call in world.calls()] == ["start", "sigint"]
    assert [r["outcome"] for r in world.rows()] == ["interrupted"]


def test_unreachable_database_exits_3_after_retries_and_alerts(world: World) -> None:
    hook_file = world.dir / "hook.env"
    world.configure(f'retries = 2\nbackoff_seconds = 0.1\non_failure = "env | grep ^CUBES_ > {hook_file}"\n')
    code, output = world.run("run", PGHOST="127.0.0.1", PGPORT="1")
    assert code == 3, output
    assert output.count("database unreachable") == 3  # two retries, then the verdict
    assert "CUBES_OUTCOME=database_unreachable" in hook_file.read_text()
    assert world.calls() == []


@pytest.mark.parametrize(
    ("scheduler", "message"),
    [
        ("retry = 3\n", "[scheduler]: unknown key 'retry' (allowed: retries, backoff_seconds, timeout_seconds"),
        ("retries = -1\n", "retries must be a whole number >= 0, got -1"),
        ('on_failure_url = "ftp://x"\n', "on_failure_url must start with http:// or https://"),
    ],
)
def test_bad_scheduler_configuration_exits_2(world: World, scheduler: str, message: str) -> None:
    world.configure(scheduler)
    code, output = world.run("run")
    assert code == 2 and message in output, output
    assert world.calls() == []

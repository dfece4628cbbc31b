"""orchestrate.py as operators use it: a real process, a real database, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from psycopg2.extensions import connection

from campaign_cubes.jobs import JOBS_WORK_DIR

ROOT = Path(__file__).resolve().parents[2]


def orchestrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


@pytest.mark.slow
def test_run_builds_both_jobs_and_reports_each_step(demo_source: str) -> None:
    done = orchestrate(
        "run",
        "--vars",
        json.dumps({"campaign_schema": demo_source}),
        env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    for job in ("agg_messageCenter_full", "agg_nmspropositionrcp_full"):
        # both builds in one dbt process (campaign_cubes.dbt_batch), each job its own
        assert f"{job}: start: dbt build --selector {job}" in done.stdout
        assert "(one process for 2 jobs)" in done.stdout.split(f"{job}: start: ")[1].splitlines()[0]
        assert f"{job}: success in" in done.stdout
    assert "run: 2 jobs succeeded" in done.stdout
    # a nightly job skips the tests the publication's audit enforced, and runs the others
    ran = {
        result["unique_id"].split(".")[2]
        for result in json.loads(
            (JOBS_WORK_DIR / "agg_nmspropositionrcp_full" / "target" / "run_results.json").read_text()
        )["results"]
    }
    assert "agg_nmspropositionrcp_full_reconciled_with_propositions" in ran
    assert "agg_nmspropositionrcp_full_propositions_without_date" in ran
    assert "not_null_agg_nmspropositionrcp_full_channel_label" in ran
    assert not [name for name in ran if name.startswith("unique_combination_of_columns_")], ran
    assert "not_null_agg_nmspropositionrcp_full_offer_id" not in ran


@pytest.mark.slow
def test_progress_in_json_lines_names_each_node_as_it_finishes(demo_source: str) -> None:
    schema = {"CAMPAIGN_CUBES_SCHEMA": "cubes_test_progress"}
    done = orchestrate(
        "--log-format",
        "json",
        "run",
        "agg_messageCenter_full",
        "--progress",
        "--vars",
        json.dumps({"campaign_schema": demo_source}),
        env=schema,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]  # every line one object
    assert {"time", "level", "job", "run_id", "event", "message", "fields"} <= set(records[0])
    nodes = [record["fields"] for record in records if record["event"] == "node"]
    built = {node["node"] for node in nodes}
    assert {"stg_campaign__event_history", "int_message_center_events__unioned", "agg_messageCenter_full"} <= built
    assert all(
        record["job"] == "agg_messageCenter_full" and record["run_id"]
        for record in records
        if record["event"] == "node"
    )
    assert sorted(node["index"] for node in nodes) == list(range(1, nodes[0]["total"] + 1))
    [aggregate] = [node for node in nodes if node["node"] == "agg_messageCenter_full"]
    assert aggregate["status"] == "success" and aggregate["rows"] > 0
    assert "step" in {record["event"] for record in records}  # the publication's long steps

    status = orchestrate("status", "--json", env=schema)
    assert status.returncode == 0, status.stdout + status.stderr
    jobs = {job["job"]: job for job in json.loads(status.stdout)["jobs"]}
    assert set(jobs) == {"agg_messageCenter_full", "agg_nmspropositionrcp_full"}
    assert jobs["agg_messageCenter_full"]["last_runs"][0]["outcome"] == "success"


def test_next_json_lists_the_fire_times() -> None:
    done = orchestrate(
        "next", "--json", "--count", "2", "--after", "2026-03-29T00:00:00+00:00", "--timezone", "Europe/Paris"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    fires = json.loads(done.stdout)["fires"]
    assert [(fire["job"], fire["at"]) for fire in fires][:2] == [
        ("agg_messageCenter_full", "2026-03-29T03:00:00+02:00"),
        ("agg_nmspropositionrcp_full", "2026-03-29T06:00:00+02:00"),
    ]


@pytest.mark.slow
def test_refused_settings_exit_2_and_name_the_cause(demo_source: str) -> None:
    done = orchestrate(
        "run",
        "agg_messageCenter_full",
        "--vars",
        json.dumps({"campaign_schema": demo_source, "reporting_timezone": "Nowhere/Town"}),
        env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate"},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "agg_messageCenter_full: FAILED (dbt exit" in done.stdout
    assert "settings refused, nothing was written: var reporting_timezone is 'Nowhere/Town'" in done.stdout


def test_unknown_job_is_a_configuration_error() -> None:
    done = orchestrate("run", "agg_nothing")
    assert done.returncode == 2
    assert "unknown job 'agg_nothing'" in done.stdout


def test_next_prints_job_and_instant_per_line() -> None:
    done = orchestrate("next", "--after", "2026-03-28T12:00:00+00:00", "--timezone", "Europe/Helsinki", "--count", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "agg_messageCenter_full 2026-03-29T04:00:00+03:00",
        "agg_nmspropositionrcp_full 2026-03-29T06:00:00+03:00",
        "agg_messageCenter_full 2026-03-30T03:00:00+03:00",
        "agg_nmspropositionrcp_full 2026-03-30T06:00:00+03:00",
    ]


def test_next_rejects_an_unknown_zone() -> None:
    done = orchestrate("next", "--timezone", "Atlantis/Capital")
    assert done.returncode == 2
    assert "unknown time zone 'Atlantis/Capital'" in done.stdout


def test_help_explains_commands_and_exit_codes() -> None:
    done = orchestrate("--help")
    assert done.returncode == 0
    for word in ("run", "serve", "status", "next", "demo", "Exit codes"):
        assert word in done.stdout
    for code in (
        "0  success",
        "1  a dbt model or test failed",
        "2  bad usage",
        "3  the database could not",
        "4  busy",
        "5  transient failures",
        "6  the run's overall timeout",
    ):
        assert code in done.stdout


@pytest.mark.slow
def test_two_simultaneous_runs_one_builds_one_is_busy(demo_source: str) -> None:
    """The real dbt: the second run of a job exits 4 and names the first; `status` shows the run."""
    env = {**os.environ, "CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate_busy"}
    argv = [
        sys.executable,
        str(ROOT / "orchestrate.py"),
        "run",
        "agg_messageCenter_full",
        "--vars",
        json.dumps({"campaign_schema": demo_source}),
    ]
    processes = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) for _ in range(2)
    ]
    outputs = {process.pid: process.communicate(timeout=600)[0] for process in processes}
    codes = {process.returncode: process for process in processes}
    assert sorted(codes) == [0, 4], outputs
    winner, loser = codes[0], codes[4]
    assert "agg_messageCenter_full: success in" in outputs[winner.pid]
    assert "busy: another run holds its lock" in outputs[loser.pid]
    assert f"orchestrate.py run pid {winner.pid}" in outputs[loser.pid]
    assert "dbt build" not in outputs[loser.pid]

    status = orchestrate(
        "status", "--job", "agg_messageCenter_full", env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate_busy"}
    )
    assert status.returncode == 0, status.stdout + status.stderr
    [run_line] = [line.split() for line in status.stdout.splitlines() if line.strip().startswith("1 ")]
    assert run_line[:3] == ["1", "manual", "-"] and "success" in run_line


@pytest.mark.slow
def test_freshness_reports_each_fact_table(demo_source: str, pg_conn: connection) -> None:
    done = orchestrate(
        "freshness",
        "--vars",
        json.dumps({"campaign_schema": demo_source}),
        env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_freshness"},
    )
    statuses = []
    for table in ("nmspropositionrcp", "nmseventhisto"):
        with pg_conn.cursor() as cursor:  # the sources' thresholds: warn after 1 day, error after 3
            cursor.execute(f"select now() - max(tslastmodified) from {demo_source}.{table}")
            [(age,)] = cursor.fetchall()
        status = "pass" if age <= timedelta(days=1) else "warn" if age <= timedelta(days=3) else "error"
        statuses.append(status)
        assert f"freshness: {table}: {status}, newest row" in done.stdout, done.stdout
    assert done.returncode == (1 if "error" in statuses else 0), done.stdout + done.stderr


@pytest.mark.slow
def test_vars_of_orchestrate_toml_are_merged_under_the_command_line(demo_source: str, tmp_path: Path) -> None:
    config = tmp_path / "orchestrate.toml"
    config.write_text(
        (ROOT / "orchestrate.toml").read_text().replace("[vars]\n", f'[vars]\ncampaign_schema = "{demo_source}"\n', 1)
    )
    env = {"CAMPAIGN_CUBES_SCHEMA": "cubes_test_toml_vars"}
    # the Campaign schema comes from the file only: the default one does not exist here
    done = orchestrate("--config", str(config), "run", "agg_messageCenter_full", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # --vars adds to the file's vars (the schema still comes from the file) and overrides them
    done = orchestrate(
        "--config", str(config), "run", "agg_messageCenter_full", "--vars", "{publish_min_volume_ratio: 0}", env=env
    )
    assert done.returncode == 0, done.stdout + done.stderr
    done = orchestrate(
        "--config", str(config), "run", "agg_messageCenter_full", "--vars", "{campaign_schema: no_such}", env=env
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "var campaign_schema is 'no_such'" in done.stdout

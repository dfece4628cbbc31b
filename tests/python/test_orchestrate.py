"""orchestrate.py as operators use it: a real process, a real database, real exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def orchestrate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), *args],
        capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=600,
    )


@pytest.mark.slow
def test_run_builds_both_jobs_and_reports_each_step(demo_source: str) -> None:
    done = orchestrate("run", "--vars", json.dumps({"campaign_schema": demo_source}),
                       env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate"})
    assert done.returncode == 0, done.stdout + done.stderr
    for job in ("agg_messageCenter_full", "agg_nmspropositionrcp_full"):
        assert f"{job}: start: dbt build --select +{job}" in done.stdout
        assert f"{job}: success in" in done.stdout
    assert "run: 2 jobs succeeded" in done.stdout


@pytest.mark.slow
def test_failed_run_exits_1_and_names_the_cause(demo_source: str) -> None:
    done = orchestrate("run", "agg_messageCenter_full",
                       "--vars", json.dumps({"campaign_schema": demo_source, "reporting_timezone": "Nowhere/Town"}),
                       env={"CAMPAIGN_CUBES_SCHEMA": "cubes_test_orchestrate"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "agg_messageCenter_full: FAILED (dbt exit" in done.stdout
    assert "reporting_timezone is 'Nowhere/Town'" in done.stdout


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
    for word in ("run", "serve", "next", "demo", "Exit codes"):
        assert word in done.stdout

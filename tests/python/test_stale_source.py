"""The freshness gate: a cube whose facts stopped changing is never published as today's.

Each test ages the newest `tslastmodified` of a demo source by a known amount and
checks what dbt and orchestrate.py do: refuse (the published table unchanged, the
refusal recorded, exit 8 and the hook for a job) or publish.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from psycopg2.extensions import connection

from campaign_cubes.dbt import DbtRun
from campaign_cubes.demo import DemoSize, load_demo

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SOURCE = "cubes_test_stale_campaign"
SCHEMA = "cubes_test_stale"
TABLE = f"{SCHEMA}.agg_messagecenter_full"
REFUSAL = "campaign-cubes stale source, nothing was published: agg_messagecenter_full: "


def _execute(conn: connection, statement: str) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(statement)
        return cursor.fetchall() if cursor.description else []


def age_events(conn: connection, hours: float) -> None:
    """Make the newest event modification (up to now) exactly `hours` old; no row is newer."""
    _execute(
        conn,
        f"""
        update {SOURCE}.nmseventhisto
        set tslastmodified = tslastmodified - (
            select max(tslastmodified) from {SOURCE}.nmseventhisto where tslastmodified < 'infinity'
        ) + now() - make_interval(secs => {hours} * 3600)
        where tslastmodified < 'infinity'
        """,
    )


def checksum(conn: connection) -> tuple[Any, ...]:
    return _execute(conn, f"select count(*), md5(string_agg(t::text, '|' order by t::text)) from {TABLE} as t")[0]


def last_record(conn: connection) -> tuple[Any, ...]:
    return _execute(
        conn,
        f"select outcome, findings from {SCHEMA}_audit.publication_log "
        "where model = 'agg_messageCenter_full' order by recorded_at desc limit 1",
    )[0]


@pytest.fixture(scope="module")
def publish(pg_conn: connection, run_cubes: Callable[..., DbtRun]) -> Iterator[Callable[..., DbtRun]]:
    """`publish(stale_source_after)`: `dbt run` of the Message Center cube, after a first build."""
    load_demo(pg_conn, SOURCE, DemoSize(propositions=200, events=2_000, execution_events=100), seed=7)

    def run(stale_source_after: Any) -> DbtRun:
        dbt_vars = {"campaign_schema": SOURCE, "stale_source_after": stale_source_after}
        return run_cubes(["run", "--select", "agg_messageCenter_full"], dbt_vars, schema=SCHEMA)

    first = run_cubes(["build", "--select", "+agg_messageCenter_full"], {"campaign_schema": SOURCE}, schema=SCHEMA)
    assert first.ok, first.log_file.read_text()[-3000:]
    yield run


@pytest.mark.parametrize(
    ("hours", "setting", "published"),
    [
        (50, "2 days", False),
        (80, "source", False),  # the sources' error_after: 3 days
        (70, "source", True),
        (90, {"agg_messageCenter_full": "100 hours"}, True),
        (90, {"agg_nmspropositionrcp_full": "1 hour"}, True),  # the other aggregate's threshold
    ],
)
def test_facts_older_than_the_threshold_are_refused_and_the_table_kept(
    pg_conn: connection, publish: Callable[..., DbtRun], hours: float, setting: Any, published: bool
) -> None:
    age_events(pg_conn, hours)
    before = checksum(pg_conn)
    run = publish(setting)
    log = run.log_file.read_text()
    if published:
        assert run.ok, log[-3000:]
        assert last_record(pg_conn) == ("published", None)
        return
    assert run.exit_code == 1, log[-3000:]
    assert REFUSAL in log
    assert f"is {hours // 24} d {hours % 24} h old (nmseventhisto: " in log, log[-3000:]
    assert checksum(pg_conn) == before
    outcome, findings = last_record(pg_conn)
    assert outcome == "stale_source" and "the newest tslastmodified up to the run's start" in findings


def test_a_row_dated_in_the_future_does_not_make_a_stale_source_fresh(
    pg_conn: connection, publish: Callable[..., DbtRun]
) -> None:
    age_events(pg_conn, 100)
    _execute(pg_conn, f"update {SOURCE}.nmseventhisto set tslastmodified = 'infinity' where bieventhistoid = 1")
    _execute(
        pg_conn,
        f"update {SOURCE}.nmseventhisto set tslastmodified = now() + interval '1 year' where bieventhistoid = 2",
    )
    before = checksum(pg_conn)
    run = publish("3 days")
    assert run.exit_code == 1 and REFUSAL in run.log_file.read_text()
    assert checksum(pg_conn) == before


def test_a_malformed_threshold_is_refused_before_anything_runs(publish: Callable[..., DbtRun]) -> None:
    for setting, said in [
        ("0 days", "var stale_source_after is '0 days'"),
        ("soon", "var stale_source_after is 'soon'"),
        ({"agg_other": "1 day"}, "var stale_source_after names 'agg_other', which is no aggregate"),
    ]:
        run = publish(setting)
        assert run.exit_code == 2, run.log_file.read_text()[-3000:]
        assert f"campaign-cubes settings refused, nothing was written: {said}" in run.log_file.read_text()


# --- the jobs ---------------------------------------------------------------------------


def orchestrate(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), "--config", str(config), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CAMPAIGN_CUBES_SCHEMA": SCHEMA},
        timeout=600,
    )


def job_config(tmp_path: Path, stale_after: str | None) -> tuple[Path, Path]:
    """orchestrate.toml on the module's source, its jobs' stale_after set, a hook writing its facts."""
    facts = tmp_path / "hook.env"
    text = (ROOT / "orchestrate.toml").read_text()
    text = text.replace("[vars]\n", f'[vars]\ncampaign_schema = "{SOURCE}"\n', 1)
    if stale_after is not None:
        selector = 'selector = "agg_messageCenter_full"\n'
        text = text.replace(selector, f'{selector}stale_after = "{stale_after}"\n', 1)
    text = text.replace('on_failure = ""', f"on_failure = \"env | grep '^CUBES_' > {facts}\"", 1)
    config = tmp_path / "orchestrate.toml"
    config.write_text(text)
    return config, facts


def test_a_job_on_stale_facts_exits_8_calls_the_hook_and_records_it(
    pg_conn: connection, publish: Callable[..., DbtRun], tmp_path: Path
) -> None:
    age_events(pg_conn, 100)  # beyond the sources' 3 days, the jobs' default
    before = checksum(pg_conn)
    config, facts = job_config(tmp_path, None)
    done = orchestrate(config, "run", "agg_messageCenter_full")
    assert done.returncode == 8, done.stdout + done.stderr
    assert "agg_messageCenter_full (stale_source)" in done.stdout
    assert checksum(pg_conn) == before
    hook = dict(line.split("=", 1) for line in facts.read_text().splitlines())
    assert hook["CUBES_OUTCOME"] == "stale_source" and hook["CUBES_EXIT_CODE"] == "8"
    assert "4 d 4 h old" in hook["CUBES_MESSAGE"]
    [(outcome, code)] = _execute(
        pg_conn,
        f"select outcome, exit_code from {SCHEMA}_audit.scheduler_runs "
        "where job = 'agg_messageCenter_full' order by run_id desc limit 1",
    )
    assert (outcome, code) == ("stale_source", 8)


def test_a_job_threshold_and_the_switch_off(
    pg_conn: connection, publish: Callable[..., DbtRun], tmp_path: Path
) -> None:
    age_events(pg_conn, 100)
    config, _ = job_config(tmp_path, "5 days")
    assert orchestrate(config, "run", "agg_messageCenter_full").returncode == 0
    config, _ = job_config(tmp_path, "3 days")
    assert orchestrate(config, "run", "agg_messageCenter_full").returncode == 8
    # --vars wins over the job's threshold: a catch-up of a source known to be old
    switched_off = orchestrate(
        config, "run", "agg_messageCenter_full", "--vars", json.dumps({"stale_source_after": "off"})
    )
    assert switched_off.returncode == 0, switched_off.stdout + switched_off.stderr
    config, _ = job_config(tmp_path, "off")
    assert orchestrate(config, "run", "agg_messageCenter_full").returncode == 0


def test_a_malformed_job_threshold_is_a_configuration_error(tmp_path: Path) -> None:
    config, _ = job_config(tmp_path, "0 hours")
    done = orchestrate(config, "run", "agg_messageCenter_full")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "[jobs.agg_messageCenter_full]: stale_after is '0 hours'" in done.stdout + done.stderr


def test_doctor_warns_of_facts_a_job_would_refuse(pg_conn: connection, publish: Callable[..., DbtRun]) -> None:
    age_events(pg_conn, 100)
    config = ROOT / "orchestrate.toml"  # the jobs' default: the sources' error_after, 3 days
    done = orchestrate(config, "doctor", "--vars", json.dumps({"campaign_schema": SOURCE}))
    assert done.returncode == 0, done.stdout + done.stderr  # a warning: the set-up itself is sound
    assert "warn freshness of nmseventhisto: newest tslastmodified 4.2 d old, beyond 3.0 d" in done.stdout
    assert "ok   freshness of nmspropositionrcp" in done.stdout
    relaxed = orchestrate(
        config, "doctor", "--vars", json.dumps({"campaign_schema": SOURCE, "stale_source_after": "5 days"})
    )
    assert (
        "ok   freshness of nmseventhisto: newest tslastmodified 4.2 d old (a job refuses beyond 5.0 d)"
        in relaxed.stdout
    )

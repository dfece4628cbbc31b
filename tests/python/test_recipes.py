"""The recipes of deploy/ (docs/orchestrators.md), each run for real against the test database.

systemd and cron run orchestrate.py itself; Dagster and Airflow run in virtualenvs of
their own, built from deploy/<name>/requirements.txt into .venv-recipes/<name>-<hash>
the first time and reused afterwards (a changed pin makes a new one). Nothing here
skips: a missing tool is installed or the test fails, saying what is missing.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes.dbt import dbt_executable, profiles_dir

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
VENVS = ROOT / ".venv-recipes"
INSTALL_DIR = "/opt/campaign-cubes"  # where the unit and the crontab expect the checkout
JOB = "agg_messageCenter_full"
JOBS = ("agg_messageCenter_full", "agg_nmspropositionrcp_full")
# orchestrate.py gives dbt this long to cancel its queries after SIGINT (campaign_cubes.dbt).
INTERRUPT_GRACE_SECONDS = 60
# A zone whose fall-back night repeats 03:00 (2026-10-25: 04:00 EEST -> 03:00 EET)
# and whose spring-forward day skips it (2026-03-29: 03:00 EET -> 04:00 EEST).
DST_ZONE = "Europe/Helsinki"
# The recipes promise: the second 03:00 of the fall-back night (01:00 UTC, not the
# first at 00:00 UTC), and 04:00 EEST (01:00 UTC) on the spring-forward day.
DST_FIRES = {"fall_back": "2026-10-25T01:00:00+00:00", "spring_forward": "2026-03-29T01:00:00+00:00"}


# --- helpers ----------------------------------------------------------------------------


def unit_sections(text: str) -> dict[str, list[tuple[str, str]]]:
    """A systemd unit's sections as (key, value) lists: keys may repeat (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def env_file(path: Path) -> dict[str, str]:
    """NAME=value lines as systemd's EnvironmentFile= reads them (double quotes stripped)."""
    values = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value
    return values


def write_env_file(path: Path, values: dict[str, str]) -> None:
    path.write_text("".join(f'{name}="{value}"\n' for name, value in values.items()))
    path.chmod(0o600)


def database_values(schema: str, source: str) -> dict[str, str]:
    """The example environment file's variables, pointed at the test database."""
    example = env_file(DEPLOY / "systemd" / "campaign-cubes.env.example")
    values = {name: os.environ.get(name, "") for name in example if name.startswith("PG")}
    return {**values, "CAMPAIGN_CUBES_SCHEMA": schema, "CAMPAIGN_CUBES_VARS": f"{{campaign_schema: {source}}}"}


def run_rows(pg_conn: connection, schema: str) -> list[tuple[str, str, str]]:
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("select job, trigger, outcome from {}.scheduler_runs order by run_id").format(
                sql.Identifier(f"{schema}_audit")
            )
        )
        return cursor.fetchall()


def published_rows(pg_conn: connection, schema: str, table: str) -> int:
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("select count(*) from {}.{}").format(sql.Identifier(schema), sql.Identifier(table)))
        row = cursor.fetchone()
        assert row is not None
        return int(row[0])


def drop_schemas(pg_conn: connection, schema: str) -> None:
    with pg_conn.cursor() as cursor:
        for name in (schema, f"{schema}_staging", f"{schema}_audit"):
            cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(name)))


def nightly_selection(job: str, target: Path) -> set[str]:
    """What `dbt build --selector <job>` runs, by dbt ls with the project's own dbt."""
    return dbt_list(["--selector", job], target)


def dbt_list(selection: list[str], target: Path) -> set[str]:
    listed = subprocess.run(
        [
            dbt_executable(),
            "ls",
            *selection,
            "--output",
            "json",
            "--output-keys",
            "unique_id",
            "--quiet",
            "--target-path",
            str(target),
            "--log-path",
            str(target / "logs"),
            "--project-dir",
            str(ROOT),
            "--profiles-dir",
            str(profiles_dir()),  # writes ./profiles.yml from the example if missing
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return {json.loads(line)["unique_id"] for line in listed.stdout.splitlines() if line.startswith("{")}


def build_results(target: Path) -> tuple[dict[str, object], list[dict[str, object]]]:
    """The one `dbt build` under `target`: its args and node results."""
    builds = []
    for path in target.rglob("run_results.json"):
        payload = json.loads(path.read_text())
        if payload["args"].get("which") == "build":
            builds.append(payload)
    assert len(builds) == 1, f"expected one dbt build under {target}, found {len(builds)}"
    return builds[0]["args"], builds[0]["results"]


def hooks_and_sources(results: list[dict[str, object]]) -> set[str]:
    return {
        str(result["unique_id"]) for result in results if str(result["unique_id"]).startswith(("source.", "operation."))
    }


def assert_nightly_build(results: list[dict[str, object]], job: str, scratch: Path) -> None:
    """The build ran exactly the job's selector: no unit test, no audited test, all passed."""
    manifest = json.loads(next(scratch.rglob("manifest.json")).read_text())
    # nodes that build or test: not the on-run-start hooks, not the sources dbt ls lists
    ran = {str(result["unique_id"]) for result in results} - hooks_and_sources(results)
    upstream = {uid for uid in nightly_selection(job, scratch / "ls") if not uid.startswith(("source.", "operation."))}
    # the exclusions have something to exclude: unit and audited tests exist in the project
    assert any(uid.startswith("unit_test.") for uid in manifest["unit_tests"])
    audited = {uid for uid, node in manifest["nodes"].items() if "audited" in node.get("tags", [])}
    assert audited
    assert not {uid for uid in ran if uid.startswith("unit_test.")}
    assert not ran & audited
    assert ran == upstream
    assert {result["status"] for result in results} <= {"success", "pass", "warn"}


def test_project_dst_policy_is_what_the_recipes_compare_with() -> None:
    """orchestrate.py: the first 03:00 of the fall-back night; after the gap in spring."""
    fires = {}
    for name, after in (("fall_back", "2026-10-24T22:00:00+00:00"), ("spring_forward", "2026-03-28T22:00:00+00:00")):
        done = subprocess.run(
            [
                sys.executable,
                str(ROOT / "orchestrate.py"),
                "next",
                "--job",
                JOB,
                "--after",
                after,
                "--count",
                "1",
                "--timezone",
                DST_ZONE,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        instant = datetime.fromisoformat(done.stdout.split()[-1]).astimezone(UTC)
        fires[name] = instant.isoformat()
    assert fires == {**DST_FIRES, "fall_back": "2026-10-25T00:00:00+00:00"}  # an hour before Dagster and Airflow


# --- the recipes' virtualenvs ---------------------------------------------------------------


def recipe_venv(name: str) -> Path:
    """.venv-recipes/<name>-<hash of its requirements>/bin: built once, then reused."""
    requirements = DEPLOY / name / "requirements.txt"
    key = hashlib.sha256(requirements.read_bytes() + sys.version.encode()).hexdigest()[:12]
    venv = VENVS / f"{name}-{key}"
    VENVS.mkdir(exist_ok=True)
    with (VENVS / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest process may be building it
        if not (venv / ".installed").exists():
            shutil.rmtree(venv, ignore_errors=True)  # a build that died half-way
            started = time.monotonic()
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(venv / "bin" / "pip"),
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                    str(requirements),
                ],
                check=True,
            )
            (venv / ".installed").write_text(f"{time.monotonic() - started:.0f} s\n")
            print(f"\n{name}: virtualenv {venv.name} installed in {time.monotonic() - started:.0f} s")
            for stale in VENVS.glob(f"{name}-*"):  # older pins
                if stale != venv:
                    shutil.rmtree(stale, ignore_errors=True)
    return venv / "bin"


def recipe_env(bin_dir: Path, schema: str, source: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "CAMPAIGN_CUBES_SCHEMA": schema,
        "CAMPAIGN_CUBES_VARS": f"{{campaign_schema: {source}}}",
        "CAMPAIGN_CUBES_PROJECT_DIR": str(ROOT),
        "DBT_PROFILES_DIR": str(profiles_dir()),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DO_NOT_TRACK": "1",
        **extra,
    }


def run_checked(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 900) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}:\n{output[-4000:]}"
    return output


# --- systemd and cron: orchestrate.py serve ------------------------------------------------


@dataclass(frozen=True)
class Crontab:
    variables: dict[str, str]
    schedule: str
    user: str
    command: str


def read_crontab() -> Crontab:
    variables, jobs = {}, []
    for raw in (DEPLOY / "cron" / "crontab").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", line):
            name, _, value = line.partition("=")
            variables[name] = value
        else:
            jobs.append(line.split(None, 6))
    [fields] = jobs
    return Crontab(variables, " ".join(fields[:5]), fields[5], fields[6])


@dataclass(frozen=True)
class ServeWorld:
    schema: str
    env_file: Path
    log: Path
    first: list[tuple[str, str, str]]
    second: list[tuple[str, str, str]]


@pytest.fixture(scope="module")
def cron_world(demo_source: str, pg_conn: connection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeWorld]:
    """The crontab's command run twice, as cron would, on a schema nothing has built."""
    tab, folder = read_crontab(), tmp_path_factory.mktemp("cron")
    schema = f"cubes_test_recipes_{uuid.uuid4().hex[:8]}"
    env_path, log = folder / "campaign-cubes.env", folder / "serve.log"
    write_env_file(env_path, database_values(schema, demo_source))
    # cron's environment: a bare PATH, the crontab's variables, the paths of this checkout
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(folder),
        "LANG": "C.UTF-8",
        **tab.variables,
        "CUBES_HOME": str(ROOT),
        "CUBES_ENV": str(env_path),
        "CUBES_LOG": str(log),
    }
    rows = []
    for _ in range(2):
        done = subprocess.run(["/bin/sh", "-c", tab.command], env=env, capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"the crontab's command exited {done.returncode}:\n{log.read_text()[-4000:]}"
        assert done.stdout == done.stderr == ""  # everything goes to the log
        rows.append(run_rows(pg_conn, schema))
    yield ServeWorld(schema, env_path, log, rows[0], rows[1])
    drop_schemas(pg_conn, schema)


def test_crontab_line_parses() -> None:
    tab = read_crontab()
    assert croniter.is_valid(tab.schedule)
    assert tab.user == "campaign-cubes"
    assert "serve --once" in tab.command and '>>"$CUBES_LOG" 2>&1' in tab.command
    ZoneInfo(tab.variables["CAMPAIGN_CUBES_TIMEZONE"])  # a real zone name
    assert "%" not in tab.command  # cron would turn it into a newline


@pytest.mark.slow
def test_crontab_catches_up_once_then_does_nothing(cron_world: ServeWorld, pg_conn: connection) -> None:
    assert sorted(cron_world.first) == sorted((job, "catch-up", "success") for job in JOBS)
    assert cron_world.second == cron_world.first  # the second look found nothing due
    assert published_rows(pg_conn, cron_world.schema, "agg_messagecenter_full") > 0
    assert published_rows(pg_conn, cron_world.schema, "agg_nmspropositionrcp_full") > 0
    assert "agg_messageCenter_full" in cron_world.log.read_text()


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    unit = (DEPLOY / "systemd" / "campaign-cubes.service").read_text()
    service = unit_sections(unit)["Service"]
    keys = dict(service)
    assert keys["Restart"] == "on-failure" and int(keys["RestartSec"]) > 0
    assert keys["KillSignal"] == "SIGINT" and keys["KillMode"] == "mixed"
    assert int(keys["TimeoutStopSec"]) > INTERRUPT_GRACE_SECONDS  # dbt's grace to cancel, then the record
    assert keys["User"] == "campaign-cubes" and keys["WorkingDirectory"] == INSTALL_DIR
    assert keys["EnvironmentFile"].startswith("/etc/")
    environment = dict(value.partition("=")[::2] for key, value in service if key == "Environment")
    assert ZoneInfo(environment["CAMPAIGN_CUBES_TIMEZONE"]) == ZoneInfo(environment["TZ"])
    assert not any("PASSWORD" in name for name in environment)  # the password only in the environment file
    example = env_file(DEPLOY / "systemd" / "campaign-cubes.env.example")
    needed = {"PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE", "CAMPAIGN_CUBES_SCHEMA", "CAMPAIGN_CUBES_VARS"}
    assert needed <= set(example)
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install Debian's 'systemd' package (.ci/run does)"
    # the unit as installed in this checkout, so that verify finds its programs
    copy = tmp_path / "campaign-cubes.service"
    copy.write_text(unit.replace(INSTALL_DIR, str(ROOT)).replace(keys["EnvironmentFile"], str(tmp_path / "env")))
    (tmp_path / "env").write_text("")
    verified = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0 and verified.stderr.strip() == "", verified.stderr


@pytest.mark.slow
def test_systemd_exec_start_serves_from_the_same_history(cron_world: ServeWorld, pg_conn: connection) -> None:
    """The unit's ExecStart, with `--once`, as systemd would start it: nothing is due any more."""
    service = unit_sections((DEPLOY / "systemd" / "campaign-cubes.service").read_text())["Service"]
    values = env_file(cron_world.env_file)
    environment = dict(value.partition("=")[::2] for key, value in service if key == "Environment")
    command = dict(service)["ExecStart"].replace(INSTALL_DIR, str(ROOT))

    def expand(match: re.Match[str]) -> str:  # systemd's ${NAME}: the variable's value as one word
        return values[match.group(1)]

    argv = [re.sub(r"\$\{(\w+)\}", expand, word) for word in shlex.split(command)]
    assert argv[:3] == [str(ROOT / ".venv" / "bin" / "python"), str(ROOT / "orchestrate.py"), "serve"]
    env = {"PATH": "/usr/bin:/bin", **environment, **values, "CAMPAIGN_CUBES_PROJECT_DIR": str(ROOT)}
    done = subprocess.run([*argv, "--once"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_rows(pg_conn, cron_world.schema) == cron_world.first  # exactly once


# --- Dagster --------------------------------------------------------------------------------


def dagster_selections() -> tuple[dict[str, tuple[str, str]], str]:
    """definitions.py's CUBES and NIGHTLY_EXCLUDE, read without importing Dagster."""
    tree = ast.parse((DEPLOY / "dagster" / "definitions.py").read_text())
    values = {
        node.targets[0].id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
    }
    return ast.literal_eval(values["CUBES"]), ast.literal_eval(values["NIGHTLY_EXCLUDE"])


@pytest.mark.slow
def test_dagster_selections_equal_the_selectors(tmp_path: Path) -> None:
    """Each cube's select/exclude in definitions.py lists what `--selector <job>` lists."""
    cubes, exclude = dagster_selections()
    assert set(cubes) == set(JOBS)
    for job, (_, select) in cubes.items():
        spelt_out = ["--select", *select.split(), "--exclude", *exclude.split(), "--indirect-selection", "cautious"]
        assert dbt_list(spelt_out, tmp_path / job) == nightly_selection(job, tmp_path / job)


DAGSTER_SCRIPT = """
import importlib.util, json, sys
from datetime import datetime, timezone
import dagster
from dagster._utils.schedules import cron_string_iterator

spec = importlib.util.spec_from_file_location("cube_definitions", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
schedules = {s.name: [s.cron_schedule, s.execution_timezone] for s in module.defs.schedules}
def fire(day, cron="0 3 * * *", zone="__ZONE__"):
    return next(cron_string_iterator(day.timestamp(), cron, zone)).astimezone(timezone.utc).isoformat()
dst = {"fall_back": fire(datetime(2026, 10, 24, 22, tzinfo=timezone.utc)),
       "spring_forward": fire(datetime(2026, 3, 28, 22, tzinfo=timezone.utc))}
result = dagster.materialize([module.ASSETS["__JOB__"]], resources=module.defs.resources)
print("RESULT " + json.dumps({"success": result.success, "schedules": schedules, "dst": dst}))
""".replace("__ZONE__", DST_ZONE).replace("__JOB__", JOB)


@pytest.mark.slow
def test_dagster_recipe_builds_the_nightly_selection(demo_source: str, pg_conn: connection, tmp_path: Path) -> None:
    bin_dir = recipe_venv("dagster")
    schema = f"cubes_test_recipes_{uuid.uuid4().hex[:8]}"
    env = recipe_env(
        bin_dir,
        schema,
        demo_source,
        DBT_TARGET_PATH=str(tmp_path / "target"),
        DAGSTER_HOME=str(tmp_path / "home"),
        CAMPAIGN_CUBES_TIMEZONE=DST_ZONE,
    )
    (tmp_path / "home").mkdir()
    script = tmp_path / "materialize.py"
    script.write_text(DAGSTER_SCRIPT)
    try:
        started = time.monotonic()
        output = run_checked(
            [str(bin_dir / "python"), str(script), str(DEPLOY / "dagster" / "definitions.py")], env, tmp_path
        )
        print(f"\ndagster: definitions loaded and {JOB} materialized in {time.monotonic() - started:.0f} s")
        [line] = [line for line in output.splitlines() if line.startswith("RESULT ")]
        report = json.loads(line.removeprefix("RESULT "))
        assert report["success"]
        assert report["schedules"] == {
            "agg_messageCenter_full_nightly": ["0 3 * * *", DST_ZONE],
            "agg_nmspropositionrcp_full_nightly": ["0 6 * * *", DST_ZONE],
        }
        assert report["dst"] == DST_FIRES  # what definitions.py says Dagster does
        _, results = build_results(tmp_path / "target")
        assert_nightly_build(results, JOB, tmp_path / "target")
        assert published_rows(pg_conn, schema, "agg_messagecenter_full") > 0
    finally:
        drop_schemas(pg_conn, schema)


# --- Airflow --------------------------------------------------------------------------------

AIRFLOW_DST_SCRIPT = """
import json
import pendulum
from airflow.timetables.base import TimeRestriction
from airflow.timetables.trigger import CronTriggerTimetable

timetable = CronTriggerTimetable("0 3 * * *", timezone="__ZONE__")
def fire(after):
    info = timetable.next_dagrun_info(last_automated_data_interval=None,
                                      restriction=TimeRestriction(earliest=pendulum.parse(after), latest=None,
                                                                  catchup=True))
    return info.run_after.in_timezone("UTC").isoformat()
print("RESULT " + json.dumps({"fall_back": fire("2026-10-24T22:00:00+00:00"),
                              "spring_forward": fire("2026-03-28T22:00:00+00:00")}))
""".replace("__ZONE__", DST_ZONE)


@pytest.mark.slow
def test_airflow_recipe_builds_the_nightly_selection(demo_source: str, pg_conn: connection, tmp_path: Path) -> None:
    bin_dir = recipe_venv("airflow")
    schema = f"cubes_test_recipes_{uuid.uuid4().hex[:8]}"
    env = recipe_env(
        bin_dir,
        schema,
        demo_source,
        DBT_TARGET_PATH=str(tmp_path / "target"),
        AIRFLOW_HOME=str(tmp_path / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__DAGS_FOLDER=str(DEPLOY / "airflow" / "dags"),
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
        CAMPAIGN_CUBES_TIMEZONE=DST_ZONE,
    )
    try:
        started = time.monotonic()
        run_checked([str(bin_dir / "airflow"), "db", "migrate"], env, tmp_path)
        output = run_checked([str(bin_dir / "airflow"), "dags", "test", f"campaign_cubes_{JOB}"], env, tmp_path)
        print(f"\nairflow: db migrate and dags test campaign_cubes_{JOB} in {time.monotonic() - started:.0f} s")
        assert f"DagRun Finished: dag_id=campaign_cubes_{JOB}" in output and "state=success" in output, output[-4000:]
        args, results = build_results(tmp_path / "target")
        assert args["selector"] == JOB
        assert_nightly_build(results, JOB, tmp_path / "target")
        assert published_rows(pg_conn, schema, "agg_messagecenter_full") > 0
        script = tmp_path / "dst.py"
        script.write_text(AIRFLOW_DST_SCRIPT)
        [line] = [
            line
            for line in run_checked([str(bin_dir / "python"), str(script)], env, tmp_path).splitlines()
            if line.startswith("RESULT ")
        ]
        assert json.loads(line.removeprefix("RESULT ")) == DST_FIRES  # what the DAG's docstring says
    finally:
        drop_schemas(pg_conn, schema)

"""orchestrate.py under hostile input: bad values end in one line and exit 2, secrets stay secret.

Every case runs the real `orchestrate.py` as a process, as an operator (or a careless
script) would, and checks its exit code and what it printed: one clear line, never a
traceback. The secrets test sets sentinel passwords, runs a build, a failing build
with both failure hooks, `docs` and `report`, then looks for the sentinels in
everything the project wrote.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import psycopg2
import pytest
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes.docs_site import DOCS_WORK_DIR
from campaign_cubes.jobs import JOBS_WORK_DIR
from support import write_thrift_profile

ROOT = Path(__file__).resolve().parents[2]
JOB = "agg_messageCenter_full"


def orchestrate(
    *args: str, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "orchestrate.py"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def assert_one_line_error(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    output = done.stdout + done.stderr
    assert done.returncode == code, output
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip() and "fontManager" not in line]
    errors = [line for line in lines if "error" in line.lower()]
    assert len(errors) == 1, output
    assert says in errors[0], output


# --- command-line values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["next", "--after", "garbage"], "argument --after: not an ISO 8601 instant"),
        (["next", "--after", "2026-02-30T03:00"], "argument --after: not an ISO 8601 instant"),
        (["next", "--after", "9999-12-31T23:00:00"], "argument --after: must be in the years 1900-9000"),
        (["next", "--after", "0001-01-01T00:00:00+01:00"], "argument --after: must be in the years 1900-9000"),
        (["next", "--count", "0"], "argument --count: must be between 1 and 1000, got 0"),
        (["next", "--count", "1000000000"], "argument --count: must be between 1 and 1000"),
        (["next", "--count", "many"], "argument --count: not a whole number"),
        (["run", "--vars", "{bad"], "argument --vars: not valid YAML"),
        (["run", "--vars", "[1,2]"], "argument --vars: must be a YAML mapping"),
        (["run", "--vars", "just text"], "argument --vars: must be a YAML mapping"),
        (["serve", "--once", "--vars", "{1: 2}"], "argument --vars: must be a YAML mapping"),
        (["docs", "--vars", "{a: [}"], "argument --vars: not valid YAML"),
        (["status", "--limit", "-1"], "argument --limit: must be >= 1, got -1"),
        (["show", "--limit", "0"], "argument --limit: must be >= 1, got 0"),
        (["show", "--limit", "abc"], "argument --limit: not a whole number: 'abc'"),
        (["docs", "--serve", "--port", "99999"], "argument --port: must be between 0 and 65535"),
        (["docs", "--serve", "--port", "-5"], "argument --port: must be between 0 and 65535"),
        (["run", "--timeout", "nan"], "argument --timeout: must be a finite number of seconds > 0"),
        (["run", "--timeout", "inf"], "argument --timeout: must be a finite number of seconds > 0"),
        (["run", "--timeout", "-1"], "argument --timeout: must be a finite number of seconds > 0"),
        (["run", "--timeout", "0"], "argument --timeout: must be a finite number of seconds > 0"),
        (["serve", "--retries", "-2"], "argument --retries: must be >= 0"),
        (["report", "--from", "2026-13-01"], "argument --from: not a date YYYY-MM-DD"),
        (["report", "--to", "yesterday"], "argument --to: not a date YYYY-MM-DD"),
        (["report", "--from", "2026-02-01", "--to", "2026-01-01"], "--from 2026-02-01 is after --to 2026-01-01"),
        (["load-demo", "--schema", 'x"; drop schema public cascade; --'], "argument --schema: must be a letter"),
        (["load-demo", "--schema", "../etc"], "argument --schema: must be a letter"),
        (["load-demo", "--events", "-10"], "argument --events: must be >= 0"),
        (["load-demo", "--seed", "99999999999999999999"], "argument --seed: must be between 0 and 9000000000000"),
        (["--config", "/nonexistent/orchestrate.toml", "next"], "file not found"),
        (["run", "no_such_job"], "unknown job 'no_such_job'"),
        (["status", "--job", "../x"], "unknown job '../x'"),
        (["next", "--timezone", "../../etc/passwd"], "unknown time zone '../../etc/passwd'"),
        (["db", "destroy"], "argument action: invalid choice: 'destroy'"),
        (["docs", "--port", "8081"], "--port needs --serve"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_values_exit_2_with_one_line(args: list[str], says: str) -> None:
    assert_one_line_error(orchestrate(*args, timeout=120), 2, says)


@pytest.mark.parametrize("command", ["report", "docs"])
def test_out_refuses_a_file_and_leaves_it(command: str, tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert_one_line_error(orchestrate(command, "--out", str(a_file), timeout=120), 2, "is a file, not a folder")
    assert a_file.read_text() == "mine"


def test_export_of_nothing_published_exits_2_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "propositions.csv"
    env = {"CAMPAIGN_CUBES_SCHEMA": f"cubes_test_unpublished_{uuid.uuid4().hex[:8]}"}
    done = orchestrate("export", "agg_nmspropositionrcp_full", "--out", str(out), env=env, timeout=120)
    assert_one_line_error(done, 2, "agg_nmspropositionrcp_full does not exist: run the job first")
    assert not out.exists()


def test_export_from_spark_not_in_session_mode_exits_2_with_one_line(tmp_path: Path) -> None:
    out = tmp_path / "events.csv"
    done = orchestrate(
        "export",
        "agg_messageCenter_full",
        "--out",
        str(out),
        env={"DBT_PROFILES_DIR": str(write_thrift_profile(tmp_path))},
    )
    assert_one_line_error(done, 2, "read Spark in session mode only; this target's method is thrift")
    assert not out.exists()


# --- orchestrate.toml ---------------------------------------------------------------------------


def write_config(folder: Path, *, job: str = JOB, scheduler: str = "") -> Path:
    path = folder / "orchestrate.toml"
    path.write_text(
        f'timezone = "UTC"\n[jobs.{json.dumps(job)}]\ncron = "0 3 * * *"\nselector = "{JOB}"\n[scheduler]\n{scheduler}'
    )
    return path


@pytest.mark.parametrize("name", ["../x", "a/b", "", ".", "..", "x" * 64, "1job", "job name", "jöb", "-rf"])
def test_job_names_that_are_not_plain_identifiers_are_refused(name: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, job=name)
    for args in (["next"], ["run"]):
        assert_one_line_error(
            orchestrate("--config", str(config), *args, timeout=120), 2, f"job name {name!r} must be a letter"
        )
    if name and name not in (".", ".."):
        assert not (JOBS_WORK_DIR / name).exists()  # refused before any folder was made for it


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("hooks.example/alert", "must start with http:// or https://"),
        ("ftp://hooks.example/alert", "must start with http:// or https://"),
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("file:///etc/passwd", "must start with http:// or https://"),
        ("http://", "must name a host"),
        ("https:///alert", "must name a host"),
        ("http://hooks.example:99999/", "does not parse"),
        ("http://hooks.example:port/", "does not parse"),
        ("http://hooks example/", "must not contain spaces or control characters"),
        (" http://hooks.example/", "must not contain spaces or control characters"),
    ],
)
def test_on_failure_url_must_be_an_http_url_that_parses(url: str, says: str, tmp_path: Path) -> None:
    config = write_config(tmp_path, scheduler=f"on_failure_url = {json.dumps(url)}\n")
    assert_one_line_error(orchestrate("--config", str(config), "next", timeout=120), 2, f"on_failure_url {says}")


def test_a_loopback_on_failure_url_is_the_operator_s_choice(tmp_path: Path) -> None:
    config = write_config(tmp_path, scheduler='on_failure_url = "http://127.0.0.1:9/alert"\n')
    done = orchestrate("--config", str(config), "next", "--count", "1", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


# --- failures that are not dbt's ---------------------------------------------------------------


@pytest.fixture
def own_job(tmp_path: Path, pg_conn: connection) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """A job of one's own (its own work folder and schema), a hook that writes its facts to a file."""
    name, schema = f"hostile_{uuid.uuid4().hex[:10]}", f"cubes_test_hostile_{uuid.uuid4().hex[:8]}"
    hook_out = tmp_path / "hook.txt"
    config = tmp_path / "orchestrate.toml"
    config.write_text(
        f'timezone = "UTC"\n[jobs.{name}]\ncron = "0 3 * * *"\nselector = "{JOB}"\n'
        f"[scheduler]\nretries = 0\n"
        f"on_failure = {json.dumps(f'echo $CUBES_OUTCOME $CUBES_EXIT_CODE > {hook_out}')}\n"
    )
    yield name, config, {"CAMPAIGN_CUBES_SCHEMA": schema}
    shutil.rmtree(JOBS_WORK_DIR / name, ignore_errors=True)
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(f"{schema}_audit")))


def _history(pg_conn: connection, schema: str) -> list[tuple[str, int, str]]:
    with pg_conn.cursor() as cursor:
        cursor.execute(
            sql.SQL("select outcome, exit_code, message from {}.scheduler_runs order by run_id").format(
                sql.Identifier(f"{schema}_audit")
            )
        )
        return cursor.fetchall()


def test_an_unexpected_error_fails_the_run_row_exits_7_and_calls_the_hook(
    own_job: tuple[str, Path, dict[str, str]], pg_conn: connection, tmp_path: Path
) -> None:
    name, config, env = own_job
    missing = tmp_path / "no-dbt-here"
    done = orchestrate(
        "--config", str(config), "run", name, env={**env, "CAMPAIGN_CUBES_DBT": str(missing)}, timeout=120
    )
    assert done.returncode == 7, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert "unexpected error: FileNotFoundError" in done.stdout
    [(outcome, code, message)] = _history(pg_conn, env["CAMPAIGN_CUBES_SCHEMA"])
    assert (outcome, code) == ("failed", 7) and str(missing) in message  # not left 'running'
    assert (tmp_path / "hook.txt").read_text().split() == ["failed", "7"]


def test_a_busy_work_folder_is_reported_as_busy(
    own_job: tuple[str, Path, dict[str, str]], pg_conn: connection, tmp_path: Path
) -> None:
    name, config, env = own_job
    folder = JOBS_WORK_DIR / name
    folder.mkdir(parents=True)
    with (folder / ".lock").open("a+") as handle:
        handle.write("another checkout's run\n")
        handle.flush()
        fcntl.flock(handle, fcntl.LOCK_EX)  # as a run for another schema from this checkout would
        done = orchestrate(
            "--config",
            str(config),
            "run",
            name,
            "--timeout",
            "3",
            env={**env, "CAMPAIGN_CUBES_DBT": str(tmp_path / "never-started")},
            timeout=120,
        )
    assert done.returncode == 4, done.stdout + done.stderr
    assert "another checkout's run" in done.stdout and "timed out" not in done.stdout.lower()
    [(outcome, code, _)] = _history(pg_conn, env["CAMPAIGN_CUBES_SCHEMA"])
    assert (outcome, code) == ("busy", 4)


# --- a refused login ------------------------------------------------------------------------------


@pytest.fixture
def login_role(pg_conn: connection) -> Iterator[tuple[str, str]]:
    """A login role with a password (name, password); dropped afterwards."""
    name, password = f"cubes_test_login_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("create role {} login password %s").format(sql.Identifier(name)), (password,))
    yield name, password
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("drop role if exists {}").format(sql.Identifier(name)))


def test_a_wrong_password_is_a_configuration_error_not_an_outage(login_role: tuple[str, str]) -> None:
    name, _ = login_role
    wrong = {"PGUSER": name, "PGPASSWORD": f"wrong-{uuid.uuid4().hex}"}
    try:
        psycopg2.connect(user=name, password=wrong["PGPASSWORD"], connect_timeout=10).close()
    except psycopg2.OperationalError as refusal:
        assert "password authentication failed" in str(refusal)
    else:
        pytest.skip(
            f"the server lets {name} in with any password (trust authentication): "
            "a wrong password cannot be told from a right one here"
        )
    for args in (["run", JOB], ["serve", "--once"], ["status"], ["show"]):
        done = orchestrate(*args, env=wrong, timeout=120)
        # At once (no retry with backoff), exit 2, and it says what failed, not "unreachable".
        assert_one_line_error(done, 2, f"authentication failed for user {name}")
        assert "unreachable" not in done.stdout + done.stderr


@pytest.mark.slow
def test_a_missing_privilege_is_a_configuration_error_and_not_retried(
    demo_source: str, pg_conn: connection, login_role: tuple[str, str], database: str | None
) -> None:
    name, password = login_role
    schema = f"cubes_test_noread_{uuid.uuid4().hex[:8]}"
    with pg_conn.cursor() as cursor:  # it may build its own schemas, but not read the Campaign tables
        cursor.execute(
            sql.SQL("grant create on database {} to {}").format(
                sql.Identifier(database or os.environ["PGDATABASE"]), sql.Identifier(name)
            )
        )
    try:
        done = orchestrate(
            "run",
            JOB,
            "--vars",
            json.dumps({"campaign_schema": demo_source}),
            env={"PGUSER": name, "PGPASSWORD": password, "CAMPAIGN_CUBES_SCHEMA": schema},
        )
    finally:
        with pg_conn.cursor() as cursor:
            cursor.execute(sql.SQL("drop owned by {} cascade").format(sql.Identifier(name)))
    output = done.stdout + done.stderr
    assert done.returncode == 2, output
    assert f"permission denied for schema {demo_source}: grant it to the build role" in output
    assert "1 attempt)" in output and "retry" not in output and "Traceback" not in output


# --- secrets --------------------------------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    bodies: ClassVar[list[bytes]] = []

    def do_POST(self) -> None:
        _Receiver.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    """A local HTTP server that keeps every POSTed body; yields its URL."""
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    _Receiver.bodies = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/alert"
    server.shutdown()
    server.server_close()


def _files(*folders: Path) -> Iterator[Path]:
    for folder in folders:
        if folder.is_file():
            yield folder
        elif folder.is_dir():
            yield from (path for path in folder.rglob("*") if path.is_file())


@pytest.mark.slow
def test_no_password_reaches_anything_the_project_writes(
    demo_source: str, pg_conn: connection, receiver: str, tmp_path: Path
) -> None:
    sentinels = {
        name: f"sentinel-{uuid.uuid4().hex}"
        for name in ("PGPASSWORD", "CAMPAIGN_SOURCE_PASSWORD", "CUBES_API_TOKEN", "WEBHOOK_SECRET")
    }
    schema = f"cubes_test_secrets_{uuid.uuid4().hex[:8]}"
    # The server trusts this login, so any PGPASSWORD connects: the sentinel travels everywhere dbt goes.
    env = {**sentinels, "CAMPAIGN_CUBES_SCHEMA": schema}
    hook_env = tmp_path / "hook-env.txt"
    config = write_config(
        tmp_path,
        scheduler=f"retries = 0\non_failure = {json.dumps(f'env > {hook_env}')}\n"
        f"on_failure_url = {json.dumps(receiver)}\n",
    )
    site, reports = tmp_path / "site", tmp_path / "reports"

    # Both jobs first: the docs compile every node, and some read what only the other job builds.
    good = orchestrate("run", "--vars", json.dumps({"campaign_schema": demo_source}), env=env)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = orchestrate(
        "--config", str(config), "run", JOB, "--vars", json.dumps({"campaign_schema": f"{schema}_missing"}), env=env
    )
    assert bad.returncode not in (0, 5), bad.stdout + bad.stderr  # failed, and not retried
    docs = orchestrate("docs", "--out", str(site), "--vars", json.dumps({"campaign_schema": demo_source}), env=env)
    assert docs.returncode == 0, docs.stdout + docs.stderr
    report = orchestrate("report", "--out", str(reports), env=env)
    assert report.returncode == 0, report.stdout + report.stderr

    # The hooks ran (so the checks below can fail): the command saw the run, not the secrets.
    dumped = hook_env.read_text()
    assert f"CUBES_JOB={JOB}" in dumped and "PGHOST=" in dumped
    assert [json.loads(body)["job"] for body in _Receiver.bodies] == [JOB]
    with pg_conn.cursor() as cursor:
        cursor.execute(sql.SQL("select t::text from {}.scheduler_runs t").format(sql.Identifier(f"{schema}_audit")))
        rows = [text for (text,) in cursor.fetchall()]
    assert len(rows) == 3

    written = {
        "output": "".join(done.stdout + done.stderr for done in (good, bad, docs, report)),
        "hook environment": dumped,
        "hook POSTs": b"".join(_Receiver.bodies).decode(),
        "run history": "\n".join(rows),
    }
    for path in _files(JOBS_WORK_DIR / JOB, DOCS_WORK_DIR, site, reports, ROOT / "logs"):
        written[str(path)] = path.read_bytes().decode("utf-8", errors="replace")
    leaks = sorted(
        (where, name) for where, text in written.items() for name, value in sentinels.items() if value in text
    )
    assert not leaks, leaks
    with pg_conn.cursor() as cursor:
        for suffix in ("", "_staging", "_audit"):
            cursor.execute(sql.SQL("drop schema if exists {} cascade").format(sql.Identifier(schema + suffix)))

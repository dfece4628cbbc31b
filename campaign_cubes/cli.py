"""Run and schedule the Campaign cube aggregates.

Each job is one `dbt build` of the selection that rebuilds, tests and publishes
one aggregate (orchestrate.toml). Without PGHOST in the environment, everything
runs against the project-local PostgreSQL, which is started on demand.

Every run (`run`, `serve`) holds the job's PostgreSQL advisory lock for its whole
length and is recorded in <schema>_audit.scheduler_runs. `serve` runs each job's
latest slot once if it has no successful run (so at most one catch-up after
downtime); `status` shows the last runs and the next slots. Transient failures
are retried with backoff ([scheduler] in orchestrate.toml); on failure the
on_failure command / on_failure_url is called. The command's environment and the
POSTed JSON carry no password: PGPASSWORD, CAMPAIGN_SOURCE_PASSWORD and every
variable named *PASSWORD*, *SECRET* or *TOKEN* are removed (only dbt gets the
database passwords). The URL gets the POST wherever it points, loopback and
private addresses included: the operator chooses it.

Exit codes:
  0  success
  1  a dbt model or test failed (not retried)
  2  bad usage or configuration, a refused login (wrong password), a missing privilege
     or a read-only server (not retried)
  3  the database could not be reached or started (after retries)
  4  busy: another process runs this job (it is named); nothing was run
  5  transient failures (connection lost or refused, server starting or stopping, lock
     timeout, deadlock, serialization failure) used up the retries
  6  the run's overall timeout expired; dbt was interrupted (SIGINT)
  7  an unexpected error (dbt missing, disk full, ...); the run is recorded as failed
  8  stale source: the facts are older than the job's stale_after; nothing was published
  130 interrupted (SIGINT/SIGTERM)
With several jobs, `run` exits with the code of the first job that did not succeed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import psycopg2
import yaml

from campaign_cubes import PROJECT_ROOT, localpg, logs
from campaign_cubes.failures import config_problem, describe_exception, login_problem
from campaign_cubes.history import HistoryUnavailable
from campaign_cubes.outcomes import (
    EXIT_BUSY,
    EXIT_CONFIG,
    EXIT_DATABASE,
    EXIT_DBT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_TRANSIENT,
    EXIT_UNEXPECTED,
)
from campaign_cubes.timetable import ConfigError, Job, Schedule, SchedulerSettings, load_schedule, upcoming

CONFIG_FILE = PROJECT_ROOT / "orchestrate.toml"
SITE_DIR = PROJECT_ROOT / "site"
DEFAULT_SCHEMA = "campaign_cubes"
DEMO_SCHEMA = "campaign_demo"
# Instants the schedules are computed for: the walk steps a day either side.
INSTANT_YEARS = (1900, 9000)
MAX_SEED = 9_000_000_000_000  # the demo generator scales the seed by 1000 inside a bigint
MAX_FIRES = 1000  # `next --count`: enough for any look ahead, bounded so that it ends
SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# The published schema: lower case (readers need no quotes), room for the longest suffix (_campaign).
PUBLISHED_SCHEMA = re.compile(r"[a-z_][a-z0-9_$]*")
PUBLISHED_SCHEMA_BYTES = 63 - len("_campaign")
EXPORTED = ("agg_nmspropositionrcp_full", "agg_messagecenter_full", "agg_messageCenter_full")

__all__ = [
    "EXIT_BUSY",
    "EXIT_CONFIG",
    "EXIT_DATABASE",
    "EXIT_DBT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "EXIT_TRANSIENT",
    "EXIT_UNEXPECTED",
    "build_parser",
    "main",
]

log = logging.getLogger(__name__)


# --- helpers ---------------------------------------------------------------


def run_vars(schedule: Schedule, overrides: str | None) -> str | None:
    """The dbt vars of a command: orchestrate.toml's [vars], then --vars over them, as JSON."""
    merged = {**schedule.dbt_vars, **(yaml.safe_load(overrides) if overrides else {})}
    return json.dumps(merged, default=str) if merged else None


def show_progress(args: argparse.Namespace) -> bool:
    """--progress / --no-progress; by default on when a person watches the terminal."""
    return sys.stdout.isatty() if args.progress is None else bool(args.progress)


def database_env() -> dict[str, str]:
    """Point this process (and so dbt and psycopg2) at the database to use."""
    env = localpg.connection_env()
    if env:
        log.info("using the project-local PostgreSQL on %s:%s", env["PGHOST"], env["PGPORT"])
    os.environ.update(env)
    return env


def published_schema() -> str:
    """$CAMPAIGN_CUBES_SCHEMA, checked as dbt checks it (macros/validate_settings.sql)
    before the run history creates <schema>_audit: nothing is written for a bad one."""
    schema = os.environ.get("CAMPAIGN_CUBES_SCHEMA") or DEFAULT_SCHEMA
    too_long = len(schema.encode()) > PUBLISHED_SCHEMA_BYTES
    if not PUBLISHED_SCHEMA.fullmatch(schema) or too_long or schema.startswith("pg_") or schema == "information_schema":
        raise ConfigError(
            f"CAMPAIGN_CUBES_SCHEMA is {schema!r}; expected lower-case letters, digits, _ or $ (not first), "
            f"at most {PUBLISHED_SCHEMA_BYTES} bytes so that its _staging, _audit and _campaign schemas fit "
            "PostgreSQL's 63, and not pg_* or information_schema; nothing was written"
        )
    return schema


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; a naive one is read in UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 instant (e.g. 2026-03-29T03:00:00+02:00): {text!r}"
        ) from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if not INSTANT_YEARS[0] <= moment.year <= INSTANT_YEARS[1]:  # before any arithmetic can overflow
        raise argparse.ArgumentTypeError(f"must be in the years {INSTANT_YEARS[0]}-{INSTANT_YEARS[1]}, got {text!r}")
    return moment


# --- command-line values: each is checked before anything runs (argparse "type=") ------------


def _whole(text: str, minimum: int, maximum: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise argparse.ArgumentTypeError(f"must be {bounds}, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole(text, 1)


def non_negative_int(text: str) -> int:
    return _whole(text, 0)


def fire_count(text: str) -> int:
    return _whole(text, 1, MAX_FIRES)


def demo_seed(text: str) -> int:
    return _whole(text, 0, MAX_SEED)


def port_number(text: str) -> int:
    return _whole(text, 0, 65535)  # 0: any free port


def seconds(text: str) -> float:
    """A finite, positive number of seconds (nan, inf and 0 would mean "never" or "at once")."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def dbt_vars(text: str) -> str:
    """dbt's --vars: a YAML mapping, checked here so that dbt never starts on a typo."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as problem:
        where = getattr(problem, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise argparse.ArgumentTypeError(f"not valid YAML{at}: {text!r}") from None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise argparse.ArgumentTypeError(
            f"must be a YAML mapping of names to values, e.g. '{{campaign_schema: public}}', got {text!r}"
        )
    return text


def schema_name(text: str) -> str:
    """A schema to create: a plain PostgreSQL identifier, never quoted into SQL or paths raw."""
    if not SCHEMA_NAME.fullmatch(text):
        raise argparse.ArgumentTypeError(f"must be a letter or _ then letters, digits or _ (at most 63), got {text!r}")
    return text


def iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), not the whole usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def selected_jobs(schedule: Schedule, names: Sequence[str]) -> list[Job]:
    return [schedule.job(name) for name in names] if names else list(schedule.jobs)


def read_schedule(args: argparse.Namespace) -> Schedule:
    return load_schedule(Path(args.config), getattr(args, "timezone", None))


def run_settings(schedule: Schedule, args: argparse.Namespace) -> SchedulerSettings:
    """[scheduler] settings with the command line's overrides."""
    overrides = {
        key: value for key, value in (("timeout_seconds", args.timeout), ("retries", args.retries)) if value is not None
    }
    if overrides.get("retries", 0) < 0 or overrides.get("timeout_seconds", 1) <= 0:
        raise ConfigError("--retries must be >= 0 and --timeout > 0")
    return dataclasses.replace(schedule.settings, **overrides)


def stop_on_sigterm() -> None:
    """SIGTERM (systemd, docker stop) stops like Ctrl-C: dbt gets SIGINT, the run is recorded."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


# --- commands ----------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from campaign_cubes.history import PgHistory
    from campaign_cubes.hooks import failure_hook
    from campaign_cubes.jobs import SystemClock, connect_with_retries, dbt_batch_runner, dbt_runner, execute_together
    from campaign_cubes.outcomes import CONFIG_ERROR, UNREACHABLE, RunResult

    schedule = read_schedule(args)
    jobs = selected_jobs(schedule, args.jobs)
    settings = run_settings(schedule, args)
    hook, clock = failure_hook(settings), SystemClock()
    database_env()
    stop_on_sigterm()
    try:
        history = connect_with_retries(lambda: PgHistory.connect(published_schema(), "run"), settings, clock, "run")
    except ConfigError as problem:  # the login was refused: no retry can fix it
        log.error("run: configuration: %s", problem)
        hook(
            RunResult(
                ",".join(job.name for job in jobs), None, "manual", CONFIG_ERROR, EXIT_CONFIG, message=str(problem)
            )
        )
        return EXIT_CONFIG
    except HistoryUnavailable as problem:
        log.error("run: database unreachable: %s", problem)
        hook(
            RunResult(
                ",".join(job.name for job in jobs), None, "manual", UNREACHABLE, EXIT_DATABASE, message=str(problem)
            )
        )
        return EXIT_DATABASE
    dbt_vars, progress = run_vars(schedule, args.vars), show_progress(args)
    try:
        # A manual run records no slot: it does not stand in for the next scheduled one.
        results = execute_together(
            [(job, None, "manual") for job in jobs],
            history=history,
            runner=dbt_runner(dbt_vars, progress),
            batch_runner=dbt_batch_runner(dbt_vars, progress),
            settings=settings,
            clock=clock,
            hook=hook,
        )
    finally:
        history.close()
    failed = [result for result in results if result.exit_code != EXIT_OK]
    if failed:
        log.error(
            "run: %d of %d jobs did not succeed: %s",
            len(failed),
            len(jobs),
            ", ".join(f"{result.job} ({result.outcome})" for result in failed),
        )
        return failed[0].exit_code
    log.info("run: %d jobs succeeded", len(jobs))
    return EXIT_OK


def cmd_next(args: argparse.Namespace) -> int:
    schedule = read_schedule(args)
    if args.job:
        schedule.job(args.job)  # unknown names fail with the list of known ones
    after = args.after or datetime.now(UTC)
    fires = upcoming(schedule, after, args.count, job=args.job)
    if args.json:
        print(
            json.dumps(
                {
                    "timezone": schedule.timezone.key,
                    "after": after.isoformat(),
                    "fires": [{"job": name, "at": moment.isoformat()} for name, moment in fires],
                }
            )
        )
        return EXIT_OK
    for name, moment in fires:
        print(f"{name} {moment.isoformat()}")
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    from campaign_cubes.history import SUCCESS, History, PgHistory
    from campaign_cubes.hooks import failure_hook
    from campaign_cubes.jobs import SystemClock, dbt_batch_runner, dbt_runner, execute, execute_together
    from campaign_cubes.outcomes import CONFIG_ERROR, UNREACHABLE, RunResult
    from campaign_cubes.scheduler import Due, Scheduler

    schedule = read_schedule(args)
    settings = run_settings(schedule, args)
    dbt_vars = run_vars(schedule, args.vars)
    hook, clock, runner = failure_hook(settings), SystemClock(), dbt_runner(dbt_vars, show_progress(args))
    batch_runner = dbt_batch_runner(dbt_vars, show_progress(args))
    database_env()
    stop_on_sigterm()

    def execute_job(history: History, job: Job, slot: datetime, trigger: str) -> RunResult:
        result = execute(job, slot, trigger, history=history, runner=runner, settings=settings, clock=clock, hook=hook)
        if result.outcome == SUCCESS:
            refresh_docs(dbt_vars, Path(args.config))
        return result

    def execute_due(history: History, due: list[Due]) -> list[RunResult]:
        results = execute_together(
            [(each.job, each.slot, each.trigger) for each in due],
            history=history,
            runner=runner,
            batch_runner=batch_runner,
            settings=settings,
            clock=clock,
            hook=hook,
        )
        if any(result.outcome == SUCCESS for result in results):
            refresh_docs(dbt_vars, Path(args.config))
        return results

    def open_history() -> PgHistory:
        try:
            return PgHistory.connect(published_schema(), "serve")
        except HistoryUnavailable as problem:
            refused = login_problem(problem)
            if refused is None:
                raise  # an outage: the scheduler alerts once and looks again every tick
            hook(RunResult("*", None, "schedule", CONFIG_ERROR, EXIT_CONFIG, message=str(refused)))
            raise refused from None

    scheduler = Scheduler(
        schedule,
        open_history=open_history,
        execute_job=execute_job,
        execute_together=execute_due,
        clock=clock,
        on_unreachable=lambda message: hook(
            RunResult("*", None, "schedule", UNREACHABLE, EXIT_DATABASE, message=message)
        ),
    )
    log.info(
        "serve: schedules in %s: %s",
        schedule.timezone.key,
        ", ".join(f"{job.name} '{job.cron}'" for job in schedule.jobs),
    )
    return scheduler.serve(once=args.once)


def refresh_docs(dbt_vars: str | None, config: Path = CONFIG_FILE) -> None:
    """After a successful scheduled run the docs site shows what was just built; a failure only warns."""
    from campaign_cubes.docs_site import DocsError, generate_docs

    try:
        generate_docs(SITE_DIR, dbt_vars=dbt_vars, config=config)
    except DocsError as problem:
        log.warning("docs: not regenerated: %s", problem)


def cmd_docs(args: argparse.Namespace) -> int:
    from campaign_cubes.docs_site import DocsError, generate_docs, serve_docs

    if args.port is not None and not args.serve:
        log.error("docs: --port needs --serve")
        return EXIT_CONFIG
    if args.out.exists() and not args.out.is_dir():
        log.error("docs: --out %s is a file, not a folder", args.out)
        return EXIT_CONFIG
    database_env()
    try:
        generate_docs(args.out, dbt_vars=run_vars(read_schedule(args), args.vars), config=Path(args.config))
    except DocsError as problem:
        refused = config_problem(str(problem))
        if refused is not None:  # a wrong password or a missing grant: the settings' fault
            log.error("docs: configuration: %s", refused)
            return EXIT_CONFIG
        log.error("docs: %s", problem)
        return EXIT_DBT_FAILED
    if args.serve:
        serve_docs(args.out, 8080 if args.port is None else args.port)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from campaign_cubes.report import ReportError, build_report

    if args.date_from and args.date_to and args.date_from > args.date_to:
        log.error("report: --from %s is after --to %s", args.date_from, args.date_to)
        return EXIT_CONFIG
    if args.out.exists() and not args.out.is_dir():
        log.error("report: --out %s is a file, not a folder", args.out)
        return EXIT_CONFIG
    database_env()
    try:
        page = build_report(published_schema(), args.out, args.date_from, args.date_to)
    except ReportError as problem:
        log.error("report: %s", problem)
        return EXIT_CONFIG
    log.info("report written to %s", page)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from campaign_cubes.history import PgHistory
    from campaign_cubes.scheduler import status_document, status_lines

    schedule = read_schedule(args)
    jobs = [schedule.job(args.job)] if args.job else list(schedule.jobs)
    database_env()
    history = PgHistory.connect(published_schema(), "status")
    now = datetime.now(UTC)
    try:
        if args.json:
            print(json.dumps(status_document(schedule, history, now, jobs, args.limit)))
        else:
            print("\n".join(status_lines(schedule, history, now, jobs, args.limit)).rstrip())
    finally:
        history.close()
    return EXIT_OK


def cmd_load_demo(args: argparse.Namespace) -> int:
    from campaign_cubes.demo import DemoRefused, DemoSize, load_demo

    database_env()
    size = DemoSize(propositions=args.propositions, events=args.events)
    started = time.monotonic()
    connection = psycopg2.connect()
    try:
        counts = load_demo(connection, args.schema, size, seed=args.seed)
    except DemoRefused as refusal:
        log.error("load-demo: %s", refusal)
        return EXIT_CONFIG
    finally:
        connection.close()
    log.info(
        "demo data loaded into %s in %.1f s: %s",
        args.schema,
        time.monotonic() - started,
        ", ".join(f"{table} {rows}" for table, rows in counts.items()),
    )
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from campaign_cubes.show import show_aggregates

    database_env()
    show_aggregates(published_schema(), args.limit)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything at once: server (the project-local one unless PGHOST is set), demo data, both jobs, rows."""
    steps: list[Callable[[argparse.Namespace], int]] = [cmd_load_demo, cmd_run, cmd_show]
    for step in steps:
        code = step(args)
        if code != EXIT_OK:
            return code
    return EXIT_OK


def cmd_db(args: argparse.Namespace) -> int:
    server = localpg.LocalServer.discover()
    if args.action == "start":
        connection = server.start()
        log.info(
            "project-local PostgreSQL running on %s:%s (data in %s)", connection.host, connection.port, server.data_dir
        )
    elif args.action == "stop":
        log.info("stopped" if server.stop() else "was not running")
    elif args.action == "status":
        running = server.is_running()
        print(f"running on 127.0.0.1:{server.port()}" if running else "not running")
        return EXIT_OK if running else EXIT_DATABASE
    elif args.action == "env":
        for key, value in server.start().env().items():
            print(f"export {key}={value}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from campaign_cubes.doctor import doctor

    database_env()
    return doctor(run_vars(read_schedule(args), args.vars), Path(args.config), sys.stdout)


def cmd_freshness(args: argparse.Namespace) -> int:
    """`dbt source freshness` of the fact tables the jobs read: one line per table."""
    from campaign_cubes.dbt import run_dbt

    database_env()
    published_schema()  # checked before dbt runs, as for a build
    dbt_vars = run_vars(read_schedule(args), args.vars)
    settings = json.loads(dbt_vars) if dbt_vars else {}
    tables = ["nmspropositionrcp"] + (
        ["nmsrtevent", "nmsbatchevent"] if settings.get("message_center_source") == "execution" else ["nmseventhisto"]
    )
    dbt_args = ["source", "freshness", "--select", *(f"source:campaign.{table}" for table in tables)]
    work_dir = PROJECT_ROOT / "target" / "freshness"
    run = run_dbt([*dbt_args, "--vars", dbt_vars] if dbt_vars else dbt_args, env={}, work_dir=work_dir)
    results = freshness_results(work_dir / "target" / "sources.json")
    for result in results:
        level = {"pass": logging.INFO, "warn": logging.WARNING}.get(result["status"], logging.ERROR)
        age = result.get("max_loaded_at_time_ago_in_s")
        log.log(
            level,
            "freshness: %s: %s, newest row %s%s",
            result["unique_id"].rsplit(".", 1)[-1],
            result["status"],
            result.get("max_loaded_at") or "none",
            "" if age is None else f" ({float(age) / 3600:.1f} h ago)",
        )
    if run.exit_code == 0 and results:
        return EXIT_OK
    if not results:
        log.error("freshness: dbt exit %d, no result (%s)", run.exit_code, run.log_file)
        return EXIT_CONFIG if run.exit_code == 2 else EXIT_DBT_FAILED
    return EXIT_DBT_FAILED


def freshness_results(path: Path) -> list[dict[str, Any]]:
    """dbt's sources.json results, or none when dbt wrote no file."""
    if not path.exists():
        return []
    return list(json.loads(path.read_text()).get("results", []))


def cmd_land(args: argparse.Namespace) -> int:
    from campaign_cubes.land import LandingRefused, land

    database_env()
    published_schema()  # checked before dbt runs, as for a build
    dbt_vars = run_vars(read_schedule(args), args.vars)
    schema = str((json.loads(dbt_vars) if dbt_vars else {}).get("campaign_schema", DEMO_SCHEMA))
    try:
        run = land(schema, dbt_vars)
    except LandingRefused as refusal:
        log.error("land: %s", refusal)
        return EXIT_CONFIG
    if run.exit_code != 0:
        log.error("land: failed (dbt exit %d): %s", run.exit_code, " | ".join(run.errors) or run.log_file)
        return EXIT_CONFIG if run.exit_code == 2 else EXIT_DBT_FAILED
    log.info("land: the Campaign tables of %s landed in %.1f s", schema, run.seconds)
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from campaign_cubes.dbt import target_type
    from campaign_cubes.export import ExportFailed, export

    if target_type() != "spark":
        database_env()
    try:
        rows = export(args.aggregate, args.out, published_schema())
    except ExportFailed as problem:  # nothing published yet, or an engine it cannot read: as `report`
        log.error("export: %s", problem)
        return EXIT_CONFIG
    log.info("export: %s: %d rows written to %s", args.aggregate, rows, args.out)
    return EXIT_OK


# --- command line ------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=Path(sys.argv[0]).name or "orchestrate.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument(
        "--log-format",
        choices=logs.FORMATS,
        default="text",
        help="text lines for people, or one JSON object per line (time, level, job, run_id, "
        "event, message, fields) for log collectors (default: text)",
    )
    parser.add_argument(
        "--config",
        default=str(CONFIG_FILE),
        metavar="TOML",
        help="jobs and [scheduler] settings (default: orchestrate.toml beside this script)",
    )
    parser.add_argument(
        "--target",
        metavar="NAME",
        help="the dbt target of profiles.yml to build on, e.g. spark (default: $DBT_TARGET, else the profile's)",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    def add_timezone(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--timezone",
            metavar="ZONE",
            help="IANA zone of the schedules (default: orchestrate.toml, "
            "$CAMPAIGN_CUBES_TIMEZONE, else the host's zone)",
        )

    def add_timeout(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--timeout",
            type=seconds,
            metavar="SECONDS",
            help="overall limit of a run, retries included; then dbt gets SIGINT so it "
            "cancels its queries (default: [scheduler] timeout_seconds, 10800)",
        )
        command.add_argument(
            "--retries",
            type=non_negative_int,
            metavar="N",
            help="retries after a transient failure (default: [scheduler] retries, 2)",
        )
        command.add_argument(
            "--vars",
            type=dbt_vars,
            metavar="YAML",
            help="dbt vars for the builds, e.g. '{campaign_schema: public, reporting_timezone: Europe/Paris}'",
        )
        command.add_argument(
            "--progress",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="one line per dbt node and publication step as the build goes (default: on when stdout is a terminal)",
        )

    run = add("run", cmd_run, "build, test and publish the named jobs now (default: all)")
    run.add_argument("jobs", nargs="*", metavar="JOB", help="agg_messageCenter_full, agg_nmspropositionrcp_full")
    add_timezone(run)
    add_timeout(run)

    serve = add("serve", cmd_serve, "run each job's latest slot once (catch-up), then every slot until stopped")
    serve.add_argument(
        "--once", action="store_true", help="look once (run what is due, catch-up included) and exit with its code"
    )
    add_timezone(serve)
    add_timeout(serve)

    status = add("status", cmd_status, "per job: latest slot and its outcome, next slot, current holder, last runs")
    status.add_argument("--job", help="only this job")
    status.add_argument("--limit", type=positive_int, default=5, help="runs shown per job (default: 5)")
    status.add_argument("--json", action="store_true", help="one JSON document instead of text")
    add_timezone(status)

    nxt = add("next", cmd_next, "print the next fire times, one '<job> <ISO 8601 instant>' per line")
    nxt.add_argument("--job", help="only this job")
    nxt.add_argument(
        "--after", type=parse_instant, metavar="ISO8601", help="start after this instant (default: now; naive = UTC)"
    )
    nxt.add_argument("--count", type=fire_count, default=3, help="fires per job (default: 3)")
    nxt.add_argument("--json", action="store_true", help="one JSON document instead of lines")
    add_timezone(nxt)

    def add_demo_size(command: argparse.ArgumentParser) -> None:
        command.add_argument("--propositions", type=non_negative_int, default=20_000, help="propositions to generate")
        command.add_argument(
            "--events", type=non_negative_int, default=20_000, help="Message Center events to generate"
        )
        command.add_argument("--seed", type=demo_seed, default=1, help="generator seed (same seed, same data)")
        command.add_argument(
            "--schema", type=schema_name, default=DEMO_SCHEMA, help=f"schema to load (default: {DEMO_SCHEMA})"
        )

    load = add("load-demo", cmd_load_demo, "(re)generate the deterministic demo Campaign tables")
    add_demo_size(load)

    show = add("show", cmd_show, "print a few rows of both published aggregates")
    show.add_argument("--limit", type=positive_int, default=5, help="rows per aggregate (default: 5)")

    demo = add("demo", cmd_demo, "project-local PostgreSQL + demo data + both jobs + a few rows")
    add_demo_size(demo)
    add_timezone(demo)
    add_timeout(demo)
    demo.add_argument("--limit", type=positive_int, default=5, help="rows shown per aggregate (default: 5)")
    demo.set_defaults(jobs=[])

    db = add("db", cmd_db, "the project-local PostgreSQL: start, stop, status, env (shell exports)")
    db.add_argument("action", choices=["start", "stop", "status", "env"])
    docs = add("docs", cmd_docs, "generate the docs site (one self-contained page); --serve it on 127.0.0.1")
    docs.add_argument(
        "--out", type=Path, default=SITE_DIR, metavar="DIR", help="folder of the site's index.html (default: site/)"
    )
    docs.add_argument("--serve", action="store_true", help="then serve it on http://127.0.0.1:PORT/ until Ctrl-C")
    docs.add_argument("--port", type=port_number, metavar="N", help="port for --serve (default: 8080)")
    docs.add_argument(
        "--vars", type=dbt_vars, metavar="YAML", help="dbt vars the jobs run with, so the site describes them"
    )

    report = add("report", cmd_report, "write the offer and Message Center report: index.html and PNG charts")
    report.add_argument(
        "--out",
        type=Path,
        default=PROJECT_ROOT / "reports",
        metavar="DIR",
        help="folder of index.html and charts/ (default: reports/)",
    )
    report.add_argument(
        "--from",
        dest="date_from",
        type=iso_date,
        metavar="DATE",
        help="first day, YYYY-MM-DD (default: the first day in the aggregates)",
    )
    report.add_argument(
        "--to",
        dest="date_to",
        type=iso_date,
        metavar="DATE",
        help="last day, inclusive (default: the last day in the aggregates)",
    )

    doctor = add(
        "doctor",
        cmd_doctor,
        "check connections, Campaign tables, grants and zones before a first run; "
        "exit 2 with the SQL to paste when a run would fail",
    )
    doctor.add_argument("--vars", type=dbt_vars, metavar="YAML", help="dbt vars the jobs run with")

    freshness = add(
        "freshness",
        cmd_freshness,
        "dbt source freshness of the fact tables the jobs read (warn_after / error_after of the sources); "
        "exit 1 when one is past error_after",
    )
    freshness.add_argument("--vars", type=dbt_vars, metavar="YAML", help="dbt vars the jobs run with")
    land = add(
        "land",
        cmd_land,
        "Spark: copy the Campaign tables of campaign_schema from PostgreSQL into the Spark database of that name",
    )
    land.add_argument("--vars", type=dbt_vars, metavar="YAML", help="dbt vars, e.g. '{campaign_schema: public}'")

    export = add("export", cmd_export, "write a published aggregate as CSV (header, ISO dates, empty for NULL)")
    export.add_argument("aggregate", choices=EXPORTED, help="the published aggregate")
    export.add_argument("--out", type=Path, required=True, metavar="FILE", help="the CSV file to write")
    export.add_argument(
        "--vars", type=dbt_vars, metavar="YAML", help="accepted as for the other commands; what is published is read"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.verbose, args.log_format)
    if args.target:  # dbt reads it; so do the commands that talk to the target themselves
        os.environ["DBT_TARGET"] = args.target
    try:
        return int(args.handler(args))
    except ConfigError as problem:
        log.error("configuration: %s", problem)
        return EXIT_CONFIG
    except (localpg.LocalServerError, HistoryUnavailable, psycopg2.Error) as problem:
        refused = login_problem(problem)
        if refused is not None:  # a wrong password is the settings' fault, not an outage
            log.error("configuration: %s", refused)
            return EXIT_CONFIG
        log.error("database: %s", " | ".join(line.strip() for line in str(problem).strip().splitlines()))
        return EXIT_DATABASE
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except Exception as problem:  # one line for the operator; the traceback with --verbose
        log.debug("unexpected error", exc_info=True)
        log.error("unexpected error: %s", describe_exception(problem))
        return EXIT_UNEXPECTED


def entry_point() -> None:
    """The `campaign-cubes` console script."""
    sys.exit(main())

#!/usr/bin/env python3
"""Run and schedule the Campaign cube aggregates.

Each job is one `dbt build` of the selection that rebuilds, tests and publishes
one aggregate (orchestrate.toml). Without PGHOST in the environment, everything
runs against the project-local PostgreSQL, which is started on demand.

Exit codes: 0 success; 1 a dbt model or test failed; 2 bad usage or
configuration; 3 the database could not be reached or started.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from campaign_cubes import localpg
from campaign_cubes.schedule import ConfigError, Job, Schedule, load_schedule, upcoming

PROJECT_ROOT = Path(__file__).resolve().parent
CONFIG_FILE = PROJECT_ROOT / "orchestrate.toml"
DEFAULT_SCHEMA = "campaign_cubes"
DEMO_SCHEMA = "campaign_demo"

EXIT_OK = 0
EXIT_DBT_FAILED = 1
EXIT_CONFIG = 2
EXIT_DATABASE = 3

# `serve` wakes at least this often to re-read the wall clock, so that a
# suspended machine or a clock change cannot make it sleep past a slot.
MAX_SLEEP_SECONDS = 60.0

log = logging.getLogger("orchestrate")


# --- helpers ---------------------------------------------------------------

def configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
        stream=sys.stdout,
    )


def database_env() -> dict[str, str]:
    """Point this process (and so dbt and psycopg2) at the database to use."""
    env = localpg.connection_env()
    if env:
        log.info("using the project-local PostgreSQL on %s:%s", env["PGHOST"], env["PGPORT"])
    os.environ.update(env)
    return env


def published_schema() -> str:
    return os.environ.get("CAMPAIGN_CUBES_SCHEMA") or DEFAULT_SCHEMA


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant; a naive one is read in UTC."""
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def selected_jobs(schedule: Schedule, names: Sequence[str]) -> list[Job]:
    return [schedule.job(name) for name in names] if names else list(schedule.jobs)


# --- commands ----------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    from campaign_cubes.jobs import run_job

    schedule = load_schedule(CONFIG_FILE, args.timezone)
    jobs = selected_jobs(schedule, args.jobs)
    database_env()
    failed = [job.name for job in jobs
              if not run_job(job, env={}, timeout=args.timeout, dbt_vars=args.vars).ok]
    if failed:
        log.error("run: %d of %d jobs failed: %s", len(failed), len(jobs), ", ".join(failed))
        return EXIT_DBT_FAILED
    log.info("run: %d jobs succeeded", len(jobs))
    return EXIT_OK


def cmd_next(args: argparse.Namespace) -> int:
    schedule = load_schedule(CONFIG_FILE, args.timezone)
    if args.job:
        schedule.job(args.job)  # unknown names fail with the list of known ones
    after = parse_instant(args.after) if args.after else datetime.now(timezone.utc)
    for name, moment in upcoming(schedule, after, args.count, job=args.job):
        print(f"{name} {moment.isoformat()}")
    return EXIT_OK


def sleep_until(moment: datetime, clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> None:
    while (remaining := (moment - clock()).total_seconds()) > 0:
        time.sleep(min(remaining, MAX_SLEEP_SECONDS))


def cmd_serve(args: argparse.Namespace) -> int:
    from campaign_cubes.jobs import run_job

    schedule = load_schedule(CONFIG_FILE, args.timezone)
    database_env()
    log.info("serve: schedules in %s: %s", schedule.timezone.key,
             ", ".join(f"{job.name} '{job.cron}'" for job in schedule.jobs))
    while True:
        name, moment = upcoming(schedule, datetime.now(timezone.utc), 1)[0]
        log.info("serve: next run %s at %s", name, moment.isoformat())
        sleep_until(moment)
        run_job(schedule.job(name), env={}, timeout=args.timeout, dbt_vars=args.vars)


def cmd_load_demo(args: argparse.Namespace) -> int:
    import psycopg2

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
    log.info("demo data loaded into %s in %.1f s: %s", args.schema, time.monotonic() - started,
             ", ".join(f"{table} {rows}" for table, rows in counts.items()))
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
        log.info("project-local PostgreSQL running on %s:%s (data in %s)",
                 connection.host, connection.port, server.data_dir)
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


# --- command line ------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orchestrate.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str) -> argparse.ArgumentParser:
        command = commands.add_parser(name, help=help_text, description=help_text)
        command.set_defaults(handler=handler)
        return command

    def add_timezone(command: argparse.ArgumentParser) -> None:
        command.add_argument("--timezone", metavar="ZONE",
                             help="IANA zone of the schedules (default: orchestrate.toml, "
                                  "$CAMPAIGN_CUBES_TIMEZONE, else the host's zone)")

    def add_timeout(command: argparse.ArgumentParser) -> None:
        command.add_argument("--timeout", type=float, default=3 * 3600, metavar="SECONDS",
                             help="stop a job's dbt (SIGINT, so it cancels its queries) after this long "
                                  "(default: 10800)")
        command.add_argument("--vars", metavar="YAML",
                             help="dbt vars for the builds, e.g. '{campaign_schema: public, "
                                  "reporting_timezone: Europe/Paris}'")

    run = add("run", cmd_run, "build, test and publish the named jobs now (default: all)")
    run.add_argument("jobs", nargs="*", metavar="JOB", help="agg_messageCenter_full, agg_nmspropositionrcp_full")
    add_timezone(run)
    add_timeout(run)

    serve = add("serve", cmd_serve, "run the jobs on their schedules (orchestrate.toml) until stopped")
    add_timezone(serve)
    add_timeout(serve)

    nxt = add("next", cmd_next, "print the next fire times, one '<job> <ISO 8601 instant>' per line")
    nxt.add_argument("--job", help="only this job")
    nxt.add_argument("--after", metavar="ISO8601", help="start after this instant (default: now; naive = UTC)")
    nxt.add_argument("--count", type=int, default=3, help="fires per job (default: 3)")
    add_timezone(nxt)

    def add_demo_size(command: argparse.ArgumentParser) -> None:
        command.add_argument("--propositions", type=int, default=20_000, help="propositions to generate")
        command.add_argument("--events", type=int, default=20_000, help="Message Center events to generate")
        command.add_argument("--seed", type=int, default=1, help="generator seed (same seed, same data)")
        command.add_argument("--schema", default=DEMO_SCHEMA, help=f"schema to load (default: {DEMO_SCHEMA})")

    load = add("load-demo", cmd_load_demo, "(re)generate the deterministic demo Campaign tables")
    add_demo_size(load)

    show = add("show", cmd_show, "print a few rows of both published aggregates")
    show.add_argument("--limit", type=int, default=5, help="rows per aggregate (default: 5)")

    demo = add("demo", cmd_demo, "project-local PostgreSQL + demo data + both jobs + a few rows")
    add_demo_size(demo)
    add_timezone(demo)
    add_timeout(demo)
    demo.add_argument("--limit", type=int, default=5, help="rows shown per aggregate (default: 5)")
    demo.set_defaults(jobs=[])

    db = add("db", cmd_db, "the project-local PostgreSQL: start, stop, status, env (shell exports)")
    db.add_argument("action", choices=["start", "stop", "status", "env"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    try:
        return int(args.handler(args))
    except ConfigError as problem:
        log.error("configuration: %s", problem)
        return EXIT_CONFIG
    except localpg.LocalServerError as problem:
        log.error("database: %s", problem)
        return EXIT_DATABASE
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())

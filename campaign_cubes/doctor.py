"""`orchestrate.py doctor`: what a DBA runs before the first night.

Each check prints one line, `ok`, `warn` or `FAIL`, with the fix. Nothing is
written: the checks read catalogs, privileges and the facts' newest
`tslastmodified` (a warning when a job's freshness gate would refuse them). The exit code is 0 when a
run would succeed, 2 otherwise; the missing grants are then printed as SQL to paste.

Two topologies (docs/topologies.md): CAMPAIGN_SOURCE_DSN unset, the Campaign
tables are read in the build's own database; set, they are read from the DSN's
database (a primary or a hot standby) through postgres_fdw, and the build's
database (libpq variables) holds the cubes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import psycopg2
import psycopg2.extensions
import yaml
from psycopg2 import sql
from psycopg2.extensions import connection

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.timetable import ConfigError, load_schedule, stale_after_seconds

ENV_DSN = "CAMPAIGN_SOURCE_DSN"
ENV_PASSWORD = "CAMPAIGN_SOURCE_PASSWORD"
ENV_SCHEMA = "CAMPAIGN_CUBES_SCHEMA"
DEFAULT_SCHEMA = "campaign_cubes"
EXIT_OK, EXIT_CONFIG = 0, 2


@dataclass(frozen=True)
class CampaignTable:
    """A Campaign table the build reads: its key and the timestamp columns staging reads."""

    name: str
    key: str
    timestamps: tuple[str, ...]
    optional_timestamps: tuple[str, ...] = ("tslastmodified",)


_EVENT_TIMESTAMPS = ("tscreated", "tsprocessing", "tsprocessed", "tslastmodified")
TABLES = {
    table.name: table
    for table in (
        CampaignTable("nmspropositionrcp", "ipropositionid", ("tsevent", "tslastmodified"), ()),
        CampaignTable("nmsoffer", "iofferid", ("tsstart", "tsend")),
        CampaignTable("nmsofferspace", "iofferspaceid", ()),
        CampaignTable("nmsdelivery", "ideliveryid", ()),
        CampaignTable("nmseventhisto", "bieventhistoid", _EVENT_TIMESTAMPS, ()),
        CampaignTable("nmsrtevent", "irteventid", _EVENT_TIMESTAMPS, ()),
        CampaignTable("nmsbatchevent", "ibatcheventid", _EVENT_TIMESTAMPS, ()),
    )
}
_DIMENSIONS = ("nmspropositionrcp", "nmsoffer", "nmsofferspace", "nmsdelivery")
MODE_TABLES = {
    "eventhisto": (*_DIMENSIONS, "nmseventhisto"),
    "execution": (*_DIMENSIONS, "nmsrtevent", "nmsbatchevent"),
}
# The fact tables of each cube, whose newest row the jobs' freshness gate reads.
CUBE_FACTS = {
    "eventhisto": (("nmspropositionrcp",), ("nmseventhisto",)),
    "execution": (("nmspropositionrcp",), ("nmsrtevent", "nmsbatchevent")),
}
SOURCES_FILE = PROJECT_ROOT / "models" / "staging" / "campaign" / "_campaign__sources.yml"
_PERIOD_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


@dataclass(frozen=True)
class Check:
    """One line of the report; `grant` is the SQL that fixes a missing privilege."""

    status: str  # "ok", "warn" or "FAIL"
    name: str
    detail: str
    fix: str = ""
    grant: str = ""

    def line(self) -> str:
        text = f"{self.status:<4} {self.name}: {self.detail}"
        return f"{text} -- fix: {self.fix}" if self.fix else text


def ok(name: str, detail: str) -> Check:
    return Check("ok", name, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check("warn", name, detail, fix)


def fail(name: str, detail: str, fix: str, grant: str = "") -> Check:
    return Check("FAIL", name, detail, fix, grant)


@dataclass
class Settings:
    """What the build would run with: dbt vars (project defaults, then --vars) and the environment."""

    dbt_vars: dict[str, Any]
    given_vars: dict[str, Any]  # --vars and [vars] alone, without dbt_project.yml's defaults
    schema: str
    dsn: str
    password: str | None
    config: Path
    campaign_schema: str = field(init=False)
    mode: str = field(init=False)

    def __post_init__(self) -> None:
        self.campaign_schema = str(self.dbt_vars.get("campaign_schema") or "")
        self.mode = str(self.dbt_vars.get("message_center_source") or "eventhisto")

    @property
    def linked(self) -> bool:
        return bool(self.dsn)


def project_vars() -> dict[str, Any]:
    """The vars of dbt_project.yml (the defaults a build runs with)."""
    data = yaml.safe_load((PROJECT_ROOT / "dbt_project.yml").read_text(encoding="utf-8")) or {}
    return dict(data.get("vars") or {})


def load_settings(dbt_vars: str | None, config: Path) -> Settings:
    given = yaml.safe_load(dbt_vars) if dbt_vars else {}
    if not isinstance(given, dict):
        raise ConfigError(f"--vars must be a YAML mapping, got {dbt_vars!r}")
    return Settings(
        dbt_vars={**project_vars(), **given},
        given_vars=given,
        schema=os.environ.get(ENV_SCHEMA) or DEFAULT_SCHEMA,
        dsn=os.environ.get(ENV_DSN, "").strip(),
        password=os.environ.get(ENV_PASSWORD) or None,
        config=config,
    )


# --- helpers ------------------------------------------------------------------


def _one(conn: connection, query: str | sql.Composable, *params: Any) -> Any:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        row = cursor.fetchone()
        return row[0] if row else None


def _rows(conn: connection, query: str | sql.Composable, *params: Any) -> list[tuple[Any, ...]]:
    with conn.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _qualified(schema: str, table: str) -> str:
    """schema.table as SQL, quoted only where PostgreSQL needs it (Campaign's names never do)."""

    def part(name: str) -> str:
        return name if name.isidentifier() and name == name.lower() and name.isascii() else _ident(name)

    return f"{part(schema)}.{part(table)}"


def _server_line(conn: connection) -> str:
    version = _one(conn, "show server_version")
    where = _one(conn, "select current_database() || ' as ' || current_user")
    return f"PostgreSQL {version}, database {where}"


@contextmanager
def _connected(connect: Callable[[], connection]) -> Iterator[connection]:
    conn = connect()
    conn.autocommit = True  # catalog reads only; no transaction left open
    try:
        yield conn
    finally:
        conn.close()


# --- the checks -----------------------------------------------------------------


def check_build_database(conn: connection, settings: Settings) -> list[Check]:
    """The database the cubes go to: reachable, writable, creation allowed."""
    name = "cubes database"
    checks = [ok(name, _server_line(conn))]
    if _one(conn, "select pg_is_in_recovery()"):
        checks.append(
            fail(
                name,
                "is a hot standby: the cubes cannot be written there",
                f"point PGHOST/PGDATABASE at a writable database and read Campaign through "
                f"{ENV_DSN} (the separate analytics database topology)",
            )
        )
    user = _one(conn, "select current_user")
    database = _one(conn, "select current_database()")
    schemas = [settings.schema, f"{settings.schema}_staging", f"{settings.schema}_audit"]
    if settings.linked:
        schemas.append(f"{settings.schema}_campaign")
    missing = [
        schema
        for schema in schemas
        if _one(conn, "select not exists (select from pg_namespace where nspname = %s)", schema)
    ]
    if missing and not _one(conn, "select has_database_privilege(current_database(), 'create')"):
        grant = f"grant create on database {_ident(database)} to {_ident(user)};"
        checks.append(
            fail("create", f"{user} may not create the schemas {', '.join(missing)} in {database}", grant, grant)
        )
    for schema in (s for s in schemas if s not in missing):
        if not _one(conn, "select has_schema_privilege(%s, 'create')", schema):
            grant = f"grant usage, create on schema {_ident(schema)} to {_ident(user)};"
            checks.append(fail("create", f"{user} may not create in schema {schema}", grant, grant))
    if not [check for check in checks if check.name == "create"]:
        checks.append(ok("create", f"{user} may create {', '.join(schemas)} in {database}"))
    return checks


def check_source_server(conn: connection, settings: Settings) -> list[Check]:
    """Version, and whether the source is a standby that may cancel long reads."""
    name = "Campaign database"
    where = " (CAMPAIGN_SOURCE_DSN, linked with postgres_fdw)" if settings.linked else " (the cubes database)"
    checks = [ok(name, _server_line(conn) + where)]
    if not _one(conn, "select pg_is_in_recovery()"):
        checks.append(ok("standby", "the Campaign database is a primary"))
        return checks
    feedback = _one(conn, "show hot_standby_feedback")
    delay = _one(conn, "show max_standby_streaming_delay")
    detail = f"a hot standby; hot_standby_feedback={feedback}, max_standby_streaming_delay={delay}"
    if feedback == "on" or delay == "-1":
        checks.append(ok("standby", detail))
    else:
        checks.append(
            warn(
                "standby",
                detail + ": replay may cancel a long build (canceling statement due to conflict with recovery)",
                "on the standby: alter system set hot_standby_feedback = on; select pg_reload_conf();",
            )
        )
    return checks


def _columns(conn: connection, schema: str, table: str) -> dict[str, str]:
    return dict(
        _rows(
            conn,
            """
        select a.attname, format_type(a.atttypid, a.atttypmod)
        from pg_attribute as a
        where a.attrelid = to_regclass(%s) and a.attnum > 0 and not a.attisdropped""",
            _qualified(schema, table),
        )
    )


def check_tables(conn: connection, settings: Settings) -> tuple[list[Check], list[str]]:
    """Each table the mode needs, its key and timestamp columns, and select on it.

    Returns the checks and the types of the timestamp columns found (for the zones).
    """
    schema, user = settings.campaign_schema, _one(conn, "select current_user")
    if _one(conn, "select not exists (select from pg_namespace where nspname = %s)", schema):
        return [
            fail(
                "campaign_schema",
                f"database {_one(conn, 'select current_database()')} has no schema {schema!r}",
                "set var campaign_schema to the schema holding the Campaign tables (public on a Campaign database)",
            )
        ], []
    checks: list[Check] = []
    if not _one(conn, "select has_schema_privilege(%s, 'usage')", schema):
        grant = f"grant usage on schema {_ident(schema)} to {_ident(user)};"
        checks.append(fail("campaign_schema", f"{user} may not use schema {schema}", grant, grant))
    needed = MODE_TABLES.get(settings.mode, MODE_TABLES["eventhisto"])
    types: list[str] = []
    for table in TABLES.values():
        columns = _columns(conn, schema, table.name)
        label = f"table {_qualified(schema, table.name)}"
        if not columns:
            if table.name in needed:
                checks.append(
                    fail(
                        label,
                        f"absent, and message_center_source={settings.mode} reads it",
                        "set var campaign_schema to the schema holding it, or check message_center_source",
                    )
                )
            else:
                checks.append(ok(label, f"absent; message_center_source={settings.mode} does not read it"))
            continue
        checks.append(_table_columns_check(label, table, columns))
        types += [columns[c] for c in table.timestamps + table.optional_timestamps if c in columns]
        if not _one(conn, "select has_table_privilege(to_regclass(%s), 'select')", _qualified(schema, table.name)):
            grant = f"grant select on {_qualified(schema, table.name)} to {_ident(user)};"
            why = "" if table.name in needed else " (present, so staging reads it)"
            checks.append(
                fail(
                    f"select on {table.name}",
                    f"{user} may not read {_qualified(schema, table.name)}{why}",
                    grant,
                    grant,
                )
            )
        else:
            checks.append(ok(f"select on {table.name}", f"{user} may read it"))
    return checks, types


def _table_columns_check(label: str, table: CampaignTable, columns: dict[str, str]) -> Check:
    wanted = (table.key, *table.timestamps)
    absent = [column for column in wanted if column not in columns]
    shown = ", ".join(f"{c} {columns[c]}" for c in (*wanted, *table.optional_timestamps) if c in columns)
    if absent:
        return fail(
            label,
            f"lacks column(s) {', '.join(absent)} (has {shown or 'none of them'})",
            "point campaign_schema at Campaign's own tables",
        )
    return ok(label, shown)


def check_freshness(conn: connection, settings: Settings, columns: dict[str, dict[str, str]]) -> list[Check]:
    """Per cube, its facts' newest tslastmodified against the strictest threshold of the
    jobs' freshness gate; a warning when a job would refuse to publish (exit 8)."""
    thresholds = gate_thresholds(settings)
    if not thresholds:
        return [ok("freshness", "the jobs' freshness gate is off")]
    checks = []
    for tables in CUBE_FACTS.get(settings.mode, CUBE_FACTS["eventhisto"]):
        present = [table for table in tables if "tslastmodified" in columns.get(table, {})]
        if not present:
            continue
        limit = min(_threshold_seconds(each, tables) for each in thresholds)
        age = _newest_age(conn, settings, present, columns)
        name, said = f"freshness of {' + '.join(tables)}", _duration(limit)
        if age is None:
            checks.append(warn(name, "no row has a tslastmodified up to now", _stale_fix(said)))
        elif age > limit:
            checks.append(warn(name, f"newest tslastmodified {_duration(age)} old, beyond {said}", _stale_fix(said)))
        else:
            checks.append(ok(name, f"newest tslastmodified {_duration(age)} old (a job refuses beyond {said})"))
    return checks


def _readable_facts(conn: connection, settings: Settings) -> dict[str, dict[str, str]]:
    """The columns of the fact tables the build may read (check_tables reports the others)."""
    tables = {table for cube in CUBE_FACTS.get(settings.mode, CUBE_FACTS["eventhisto"]) for table in cube}
    readable = {}
    for table in sorted(tables):
        name = _qualified(settings.campaign_schema, table)
        if _one(
            conn, "select to_regclass(%s) is not null and has_table_privilege(to_regclass(%s), 'select')", name, name
        ):
            readable[table] = _columns(conn, settings.campaign_schema, table)
    return readable


def gate_thresholds(settings: Settings) -> list[str]:
    """The thresholds the jobs would use: --vars/[vars] stale_source_after if given, else each
    job's stale_after; `off` left out."""
    given = settings.given_vars.get("stale_source_after")
    if "stale_source_after" in settings.given_vars:
        values = list(given.values()) if isinstance(given, dict) else [given]
    else:
        try:
            values = [job.stale_after for job in load_schedule(settings.config).jobs]
        except ConfigError:
            return []  # the scheduler zone check says what is wrong with the file
    return [str(value) for value in values if value not in (None, False) and str(value).strip().lower() != "off"]


def _threshold_seconds(threshold: str, tables: tuple[str, ...]) -> float:
    if threshold.strip().lower() != "source":
        return stale_after_seconds(threshold) or 0.0
    sources = yaml.safe_load(SOURCES_FILE.read_text(encoding="utf-8"))["sources"][0]["tables"]
    limits = [
        after["count"] * _PERIOD_SECONDS[after["period"]]
        for table in sources
        if table["name"] in tables and (after := table.get("config", {}).get("freshness", {}).get("error_after"))
    ]
    return float(min(limits)) if limits else float("inf")


def _newest_age(
    conn: connection, settings: Settings, tables: list[str], columns: dict[str, dict[str, str]]
) -> float | None:
    """Seconds since the newest tslastmodified (up to now) of `tables`, or None."""
    zone = str(settings.dbt_vars.get("campaign_database_timezone") or "")
    ages = []
    for table in tables:
        column: sql.Composable = sql.Identifier("tslastmodified")
        if columns[table]["tslastmodified"].startswith("timestamp without"):
            if not zone:
                continue  # the zone check fails already
            column = sql.SQL("{} at time zone {}").format(column, sql.Literal(zone))
        query = sql.SQL("select extract(epoch from now() - max(m)) from (select {} as m from {}) as t where m <= now()")
        ages.append(_one(conn, query.format(column, sql.Identifier(settings.campaign_schema, table))))
    known = [float(age) for age in ages if age is not None]
    return min(known) if known else None


def _duration(seconds: float) -> str:
    return f"{seconds / 86400:.1f} d" if seconds >= 86400 else f"{seconds / 3600:.1f} h"


def _stale_fix(limit: str) -> str:
    return (
        f"a job would publish nothing and exit 8 (stale source, beyond {limit}): check that Campaign, or the "
        "standby's replication, still writes; or set the job's stale_after in orchestrate.toml"
    )


def check_fdw(conn: connection, settings: Settings) -> list[Check]:
    """postgres_fdw in the cubes database, and what a non-superuser needs to use it."""
    name = "postgres_fdw"
    user = _one(conn, "select current_user")
    superuser = bool(_one(conn, "select rolsuper from pg_roles where rolname = current_user"))
    checks: list[Check] = []
    installed = _one(conn, "select extversion from pg_extension where extname = 'postgres_fdw'")
    if installed is None:
        if not _one(conn, "select count(*) from pg_available_extensions where name = 'postgres_fdw'"):
            checks.append(
                fail(
                    name,
                    "not available on the cubes server",
                    "install the server's contrib package (Debian: postgresql-<version> ships it)",
                )
            )
        elif not superuser:
            grant = "create extension postgres_fdw;"
            checks.append(
                fail(
                    name,
                    f"not installed in {_one(conn, 'select current_database()')}, and {user} is not a superuser",
                    f"as a superuser, in that database: {grant}",
                    grant,
                )
            )
        else:
            checks.append(ok(name, "available; the build installs it"))
    elif not superuser and not _one(conn, "select has_foreign_data_wrapper_privilege('postgres_fdw', 'usage')"):
        grant = f"grant usage on foreign data wrapper postgres_fdw to {_ident(user)};"
        checks.append(fail(name, f"installed ({installed}), but {user} may not use it", grant, grant))
    else:
        checks.append(ok(name, f"installed ({installed})"))
    if not superuser and settings.password is None and not _password_not_required(conn, settings):
        checks.append(
            fail(
                "source password",
                f"{ENV_PASSWORD} is unset and {user} is not a superuser: "
                "postgres_fdw lets a non-superuser connect only with a password of its own",
                f"set {ENV_PASSWORD}, or as a superuser: alter user mapping for {_ident(user)} server "
                f"{_ident(settings.schema + '_campaign')} options (add password_required 'false') "
                "(then the analytics server's pgpass file is used)",
            )
        )
    return checks


def _password_not_required(conn: connection, settings: Settings) -> bool:
    options = (
        _one(
            conn,
            "select umoptions from pg_user_mappings where usename = current_user and srvname = %s",
            settings.schema + "_campaign",
        )
        or []
    )
    return "password_required=false" in options


def check_reporting_role(conn: connection, settings: Settings) -> Check:
    role = str(settings.dbt_vars.get("reporting_role") or "")
    if not role:
        return ok("reporting role", "none (var reporting_role is empty): no grant is made")
    if _one(conn, "select count(*) from pg_roles where rolname = %s", role):
        return ok("reporting role", f"{role} exists; it gets select on the two published tables")
    if _one(conn, "select count(*) from pg_roles where rolname = current_user and (rolsuper or rolcreaterole)"):
        return ok("reporting role", f"{role} does not exist; the build creates it")
    return warn(
        "reporting role",
        f"{role} does not exist and the build may not create it: the cubes are published without the grant",
        f"create role {_ident(role)} nologin;",
    )


def check_zones(build: connection, settings: Settings, timestamp_types: Iterable[str]) -> list[Check]:
    """The scheduler's zone, the reporting zone and the Campaign database's storage zone."""
    checks: list[Check] = []
    try:
        schedule = load_schedule(settings.config)
        checks.append(ok("scheduler zone", f"{schedule.timezone.key} (cron times are read there)"))
    except ConfigError as problem:
        checks.append(fail("scheduler zone", str(problem), f"fix {settings.config} or CAMPAIGN_CUBES_TIMEZONE"))
    checks.append(_zone_check(build, "reporting_timezone", str(settings.dbt_vars.get("reporting_timezone") or "")))
    local = sorted({t for t in timestamp_types if t.startswith("timestamp without")})
    storage = str(settings.dbt_vars.get("campaign_database_timezone") or "")
    if not local:
        checks.append(
            ok(
                "campaign_database_timezone",
                "not needed: Campaign's timestamp columns are timestamp with time zone"
                + (f" (var set to {storage}, ignored)" if storage else ""),
            )
        )
    elif not storage:
        checks.append(
            fail(
                "campaign_database_timezone",
                "Campaign stores timestamp without time zone and the var is unset",
                "set var campaign_database_timezone to Campaign's WdbcTimeZone (e.g. Europe/Paris)",
            )
        )
    else:
        checks.append(
            _zone_check(
                build,
                "campaign_database_timezone",
                storage,
                " (Campaign's timestamps without time zone are read in it)",
            )
        )
    return checks


def _zone_check(conn: connection, var: str, zone: str, note: str = "") -> Check:
    if zone and _one(conn, "select count(*) from pg_timezone_names where lower(name) = lower(%s)", zone):
        return ok(var, zone + note)
    return fail(
        var,
        f"{zone!r} is not a time zone PostgreSQL knows",
        f"set var {var} to an IANA name (select name from pg_timezone_names)",
    )


def check_dsn(settings: Settings) -> Check | None:
    """The DSN parses and carries no password (it would end in a file or a log)."""
    try:
        parsed = psycopg2.extensions.parse_dsn(settings.dsn)
    except psycopg2.ProgrammingError as problem:
        return fail(
            ENV_DSN,
            f"not a libpq connection string ({str(problem).strip()})",
            "write it as host=... port=... dbname=... user=... or postgresql://user@host:port/dbname",
        )
    if "password" in parsed:
        return fail(ENV_DSN, "holds a password", f"remove it and set {ENV_PASSWORD} or use a pgpass file")
    return None


def source_connection(settings: Settings) -> connection:
    """The Campaign database as the build reads it: the DSN's login, or the build's own database."""
    if not settings.linked:
        return psycopg2.connect()
    extra: dict[str, Any] = {"password": settings.password} if settings.password is not None else {}
    conn: connection = psycopg2.connect(settings.dsn, application_name="orchestrate.py doctor", **extra)
    return conn


def run_checks(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    try:
        with _connected(psycopg2.connect) as build:
            checks += check_build_database(build, settings)
            if settings.linked:
                checks += check_fdw(build, settings)
            checks.append(check_reporting_role(build, settings))
            types: list[str] = []
            checks += _source_checks(settings, types)
            checks += check_zones(build, settings, types)
    except psycopg2.Error as problem:
        checks.append(
            fail(
                "cubes database",
                f"cannot connect: {str(problem).strip().splitlines()[0]}",
                "check PGHOST, PGPORT, PGUSER, PGPASSWORD and PGDATABASE",
            )
        )
    return checks


def _source_checks(settings: Settings, types: list[str]) -> list[Check]:
    if settings.linked and (problem := check_dsn(settings)):
        return [problem]
    try:
        with _connected(lambda: source_connection(settings)) as source:
            checks = check_source_server(source, settings)
            table_checks, found = check_tables(source, settings)
            types += found
            return checks + table_checks + check_freshness(source, settings, _readable_facts(source, settings))
    except psycopg2.Error as problem:
        message = str(problem).strip().splitlines()[0]
        fix = f"check {ENV_DSN} and {ENV_PASSWORD} (or the pgpass file)"
        grant = ""
        if "permission denied for database" in message:
            parsed = psycopg2.extensions.parse_dsn(settings.dsn)
            database, user = parsed.get("dbname", ""), parsed.get("user", "")
            grant = f"grant connect on database {_ident(database)} to {_ident(user)};"
            fix = grant
        return [fail("Campaign database", f"cannot connect: {message}", fix, grant)]


def report(checks: list[Check], out: TextIO) -> int:
    """Print one line per check, then the grants to paste; the exit code."""
    for check in checks:
        print(check.line(), file=out)
    failed = [check for check in checks if check.status == "FAIL"]
    grants = [check.grant for check in failed if check.grant]
    if grants:
        print("-- missing grants, to run as the owner or a superuser (on the primary for a standby):", file=out)
        for grant in dict.fromkeys(grants):
            print(grant, file=out)
    verdict = "a run would fail" if failed else "a run would succeed"
    print(f"{len(checks)} checks, {len(failed)} failed: {verdict}", file=out)
    return EXIT_CONFIG if failed else EXIT_OK


def doctor(dbt_vars: str | None, config: Path, out: TextIO) -> int:
    return report(run_checks(load_settings(dbt_vars, config)), out)

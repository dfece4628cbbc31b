"""The dbt docs site: one self-contained page that works offline, served on loopback only.

`generate_docs` runs `dbt docs generate --static` (dbt >= 1.8), which writes
`static_index.html`: the docs application with the manifest and the catalog built
in, so the page needs neither a server nor the network (dbt's usage tracker, the
only remote fetch in it, stays off because DBT_SEND_ANONYMOUS_USAGE_STATS is false).
The page is copied to `<out_dir>/index.html` by an atomic rename, so a reader or
`serve_docs` never sees half a file. The schedule the aggregates' pages show (zone and
cron of each job) comes from the orchestrate.toml the caller names (`--config`).

dbt runs in a work directory of its own (`target/docs/`, kept between calls so dbt
re-parses only what changed), serialised by a file lock: calls may overlap each
other and the scheduled jobs, which use `target/jobs/<job>/`.
"""

from __future__ import annotations

import fcntl
import functools
import json
import logging
import re
import tomllib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from campaign_cubes import PROJECT_ROOT
from campaign_cubes.dbt import run_dbt, tail
from campaign_cubes.files import write_atomically
from campaign_cubes.timetable import ConfigError, Schedule, load_schedule

log = logging.getLogger(__name__)

DOCS_WORK_DIR = PROJECT_ROOT / "target" / "docs"
SCHEDULE_FILE = PROJECT_ROOT / "orchestrate.toml"
PAGE_NAME = "index.html"
LOOPBACK = "127.0.0.1"
# dbt vars the aggregates' descriptions and meta show as the schedule: its zone, and
# each job's cron ({job name: cron}).
SCHEDULE_ZONE_VAR = "schedule_timezone"
SCHEDULE_CRONS_VAR = "schedule_crons"
DEFAULT_TIMEOUT_SECONDS = 600.0

# What would make a browser fetch something from elsewhere when the page opens.
_REMOTE_REFERENCE = re.compile(
    r"""<(?:script|img|iframe)\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//"""
    r"""|@import\s+(?:url\()?\s*["']?(?:https?:)?//"""
    r"""|url\(\s*["']?(?:https?:)?//""",
    re.IGNORECASE,
)


class DocsError(RuntimeError):
    """The docs site could not be generated or served; the message says why."""


def remote_references(page: str) -> list[str]:
    """Markup in `page` that would fetch from the network (empty for an offline page)."""
    return [page[m.start() : m.start() + 120] for m in _REMOTE_REFERENCE.finditer(page)]


def _schedule(env: dict[str, str] | None, config: Path) -> Schedule | None:
    """The schedule of `config` (zone overridden by CAMPAIGN_CUBES_TIMEZONE), None if unreadable.

    The site is documentation: a broken schedule only leaves it out (with a warning);
    `run` and `serve` are the commands that refuse it.
    """
    override = (env or {}).get("CAMPAIGN_CUBES_TIMEZONE") or None
    try:
        return load_schedule(config, override)
    except (ConfigError, OSError, tomllib.TOMLDecodeError) as problem:
        log.warning("docs: schedule unknown (%s)", problem)
        return None


def schedule_zone(env: dict[str, str] | None = None, config: Path = SCHEDULE_FILE) -> str | None:
    """The IANA zone the scheduler reads the cron expressions in, or None if unknown."""
    schedule = _schedule(env, config)
    return schedule.timezone.key if schedule else None


def docs_vars(dbt_vars: str | None, zone: str | None, crons: Mapping[str, str] | None = None) -> str:
    """The `--vars` of the docs build: the caller's vars plus the schedule's zone and crons."""
    merged: dict[str, Any] = dict(yaml.safe_load(dbt_vars) or {}) if dbt_vars else {}
    if zone and SCHEDULE_ZONE_VAR not in merged:
        merged[SCHEDULE_ZONE_VAR] = zone
    if crons and SCHEDULE_CRONS_VAR not in merged:
        merged[SCHEDULE_CRONS_VAR] = dict(crons)
    return json.dumps(merged)


@contextmanager
def _exclusive(work_dir: Path) -> Iterator[None]:
    """One docs build at a time in `work_dir` (released if the process dies)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with (work_dir / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def generate_docs(
    out_dir: Path,
    env: dict[str, str] | None = None,
    *,
    dbt_vars: str | None = None,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    work_dir: Path = DOCS_WORK_DIR,
    config: Path = SCHEDULE_FILE,
) -> Path:
    """Generate the static docs site into `out_dir`; returns the page (`out_dir/index.html`).

    `env` is added to the environment of dbt (e.g. PG* variables,
    CAMPAIGN_CUBES_SCHEMA); `dbt_vars` are the vars the jobs run with (YAML), so that
    the site describes what they build; `config` is the orchestrate.toml whose schedule
    it shows; `work_dir` holds dbt's target/ and logs/.
    Raises DocsError when dbt fails; the previous page, if any, then stays.
    """
    env = dict(env or {})
    schedule = _schedule(env, Path(config))
    zone = schedule.timezone.key if schedule else None
    crons = {job.name: job.cron for job in schedule.jobs} if schedule else None
    args = ["docs", "generate", "--static", "--vars", docs_vars(dbt_vars, zone, crons)]
    static_page = work_dir / "target" / "static_index.html"
    with _exclusive(work_dir):
        static_page.unlink(missing_ok=True)  # never publish a previous run's page
        run = run_dbt(args, env={**env, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}, work_dir=work_dir, timeout=timeout)
        if not run.ok or not static_page.exists():
            cause = "timed out" if run.timed_out else f"dbt exit {run.exit_code}"
            raise DocsError(f"dbt docs generate failed ({cause}); log {run.log_file}:\n{tail(run.log_file)}")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        page = write_atomically(Path(out_dir) / PAGE_NAME, static_page.read_bytes())
    log.info("docs: site written to %s in %.1f s", page, run.seconds)
    return page


class _SiteHandler(SimpleHTTPRequestHandler):
    """Static files of the site; never cached, so a regenerated page is seen at once."""

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        log.debug("docs: %s %s", self.address_string(), format % args)


def docs_server(out_dir: Path, port: int) -> ThreadingHTTPServer:
    """An HTTP server of `out_dir` bound to 127.0.0.1 (port 0: any free port), not yet serving."""
    if not (Path(out_dir) / PAGE_NAME).exists():
        raise DocsError(f"no docs site in {out_dir}: generate it first (orchestrate.py docs)")
    handler = functools.partial(_SiteHandler, directory=str(out_dir))
    try:
        return ThreadingHTTPServer((LOOPBACK, port), handler)
    except OSError as problem:
        raise DocsError(f"cannot listen on {LOOPBACK}:{port}: {problem.strerror}") from problem


def serve_docs(out_dir: Path, port: int) -> None:
    """Serve the site on http://127.0.0.1:<port>/ until interrupted (Ctrl-C)."""
    server = docs_server(out_dir, port)
    host, bound_port = server.server_address[:2]
    log.info("docs: serving %s on http://%s:%d/ (Ctrl-C to stop)", out_dir, host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        log.info("docs: stopped")
    finally:
        server.server_close()

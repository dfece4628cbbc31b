"""Running dbt as a subprocess, one at a time, and reading what it did.

dbt's in-process runner is not safe for repeated invocations, so each build is a
fresh `dbt` process. Its console output goes to a log file; what happened to each
node is read from `run_results.json`, which is the per-node truth.
"""

from __future__ import annotations

import contextvars
import ctypes
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import yaml

from campaign_cubes import PROJECT_ROOT

PROFILE_EXAMPLE = PROJECT_ROOT / "profiles.yml.example"
# Node statuses that make a build unsuccessful ("warn" does not).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "skipped"})
# How long dbt gets to cancel its queries after SIGINT before it is killed.
INTERRUPT_GRACE_SECONDS = 60.0
ENV_DBT = "CAMPAIGN_CUBES_DBT"
_PR_SET_PDEATHSIG = 1
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # colour codes, should a message carry some
EventSink = Callable[[dict[str, Any]], None]  # receives each dbt JSON log event

log = logging.getLogger(__name__)
# The database passwords dbt itself needs (the profile's and the Campaign source's).
DATABASE_SECRETS = ("PGPASSWORD", "CAMPAIGN_SOURCE_PASSWORD")
# Any variable whose name holds one of these words is taken for a secret.
_SECRET_WORDS = ("PASSWORD", "SECRET", "TOKEN")
# dbt's own convention: it redacts these from its logs, and profiles may read them.
_DBT_SECRET_PREFIX = "DBT_ENV_SECRET_"


def is_secret(name: str) -> bool:
    upper = name.upper()
    return upper in DATABASE_SECRETS or any(word in upper for word in _SECRET_WORDS)


def scrubbed_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`environ` (default: this process's) without passwords, secrets or tokens.

    For every subprocess that does not log in to the database: hooks, helpers.
    """
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if not is_secret(name)}


def dbt_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """dbt's environment: scrubbed, but with the database passwords it logs in with."""
    keep = {
        name: value
        for name, value in os.environ.items()
        if name.upper() in DATABASE_SECRETS or name.startswith(_DBT_SECRET_PREFIX)
    }
    return {**scrubbed_env(), **keep, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **(extra or {})}


@dataclass(frozen=True)
class NodeResult:
    """One node of a dbt invocation, as run_results.json reports it."""

    unique_id: str
    status: str
    message: str
    failures: int | None

    @property
    def name(self) -> str:
        # unique ids look like "test.campaign_cubes.not_null_x.1a2b" or "model.campaign_cubes.x"
        parts = self.unique_id.split(".")
        return parts[2] if len(parts) > 2 else self.unique_id


@dataclass(frozen=True)
class DbtRun:
    """The outcome of one dbt invocation."""

    argv: list[str]
    exit_code: int
    seconds: float
    log_file: Path
    results: list[NodeResult] = field(default_factory=list)
    timed_out: bool = False
    # the messages of dbt's error events (structured log), e.g. why it could not run at all
    errors: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.failed

    @property
    def failed(self) -> list[NodeResult]:
        return [r for r in self.results if r.status in FAILED_STATUSES]

    @property
    def broken(self) -> list[NodeResult]:
        """The failed nodes that caused the failure, without those skipped because of them."""
        return [r for r in self.failed if r.status != "skipped"]

    @property
    def warned(self) -> list[NodeResult]:
        return [r for r in self.results if r.status == "warn"]

    def status_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for result in self.results:
            counts[result.status] = counts.get(result.status, 0) + 1
        return counts


def dbt_executable() -> str:
    """$CAMPAIGN_CUBES_DBT if set (another dbt, or the tests' stand-in), else the virtualenv's."""
    configured = os.environ.get(ENV_DBT)
    if configured:
        return configured
    beside = Path(sys.executable).parent / "dbt"
    if beside.exists():
        return str(beside)
    found = shutil.which("dbt")
    if found is None:
        raise FileNotFoundError(
            "dbt is not installed in this environment (./cubes.sh setup, or pip install -r requirements.lock)"
        )
    return found


def dbt_command() -> list[str]:
    """The command that runs dbt: for a Spark target, the launcher that keeps ANSI mode on
    (campaign_cubes/spark_dbt.py); $CAMPAIGN_CUBES_DBT, when set, always wins."""
    if not os.environ.get(ENV_DBT) and target_type() == "spark":
        return [sys.executable, "-m", "campaign_cubes.spark_dbt"]
    return [dbt_executable()]


def target_type() -> str | None:
    """The adapter type of the target dbt will use ($DBT_TARGET, else the profile's default)."""
    try:
        profile = yaml.safe_load((profiles_dir() / "profiles.yml").read_text())["campaign_cubes"]
        target = os.environ.get("DBT_TARGET") or profile["target"]
        return str(profile["outputs"][target]["type"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None  # dbt itself says what is wrong with the profile


def profiles_dir() -> Path:
    """Where dbt finds the `campaign_cubes` profile; creates it from the example if needed."""
    configured = os.environ.get("DBT_PROFILES_DIR")
    if configured:
        return Path(configured)
    profile = PROJECT_ROOT / "profiles.yml"
    if not profile.exists():
        shutil.copyfile(PROFILE_EXAMPLE, profile)
    return PROJECT_ROOT


def read_run_results(target_path: Path) -> list[NodeResult]:
    path = target_path / "run_results.json"
    if not path.exists():
        return []
    payload = json.loads(path.read_text())
    return [
        NodeResult(
            unique_id=item["unique_id"],
            status=str(item["status"]),
            message=(item.get("message") or "").strip(),
            failures=item.get("failures"),
        )
        for item in payload.get("results", [])
    ]


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT first, so that dbt cancels its queries; kill only if it will not stop."""
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=INTERRUPT_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupt_when_parent_dies(parent: int) -> None:
    """In the dbt child: get SIGINT if orchestrate.py dies, even by kill -9.

    Otherwise an orphaned dbt keeps building (and holding table locks) while the
    next scheduler, finding the run's lock free, starts the same build again.
    Linux signals when the *thread* that started dbt ends; run_dbt waits in it.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGINT)
    except (OSError, AttributeError):  # not Linux: best effort only
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGINT)


def run_dbt(
    args: list[str],
    *,
    env: dict[str, str],
    work_dir: Path,
    timeout: float | None = None,
    on_event: EventSink | None = None,
) -> DbtRun:
    """Run `dbt <args>` with its target and logs under `work_dir`; never raises on failure.

    dbt writes its events as JSON lines; each is written to the console log as the
    text dbt would have printed, and handed to `on_event` as it happens (progress).
    """
    target_path = work_dir / "target"
    log_path = work_dir / "logs"
    log_path.mkdir(parents=True, exist_ok=True)
    (target_path / "run_results.json").unlink(missing_ok=True)
    argv = [
        *dbt_command(),
        *args,
        "--log-format",
        "json",
        "--no-use-colors",
        "--project-dir",
        str(PROJECT_ROOT),
        "--profiles-dir",
        str(profiles_dir()),
        "--target-path",
        str(target_path),
        "--log-path",
        str(log_path),
    ]
    console_log = log_path / "console.log"
    started = time.monotonic()
    timed_out = False
    errors: list[str] = []
    with console_log.open("w", encoding="utf-8") as sink:
        parent = os.getpid()
        process = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dbt_env(env),
            cwd=PROJECT_ROOT,
            preexec_fn=(lambda: _interrupt_when_parent_dies(parent)) if sys.platform == "linux" else None,
        )
        assert process.stdout is not None
        # in this thread's context, so that progress lines carry the job being run
        relay = threading.Thread(
            target=contextvars.copy_context().run, args=(_relay, process.stdout, sink, on_event, errors), daemon=True
        )
        relay.start()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(process)
        except KeyboardInterrupt:
            _stop(process)
            raise
        finally:
            relay.join()
    return DbtRun(
        argv=argv,
        exit_code=process.returncode,
        seconds=time.monotonic() - started,
        log_file=console_log,
        results=read_run_results(target_path),
        timed_out=timed_out,
        errors=tuple(errors),
    )


def _relay(stream: IO[bytes], sink: IO[str], on_event: EventSink | None, errors: list[str]) -> None:
    """Copy dbt's output to the console log as text, keeping the error events' messages
    and handing each JSON event on."""
    for raw in stream:
        line = raw.decode("utf-8", errors="replace")
        event = parse_event(line)
        sink.write(ANSI.sub("", line) if event is None else event_text(event))
        sink.flush()
        if event is not None and event["info"].get("level") == "error":
            errors.append(ANSI.sub("", str(event["info"].get("msg", ""))))
        if event is not None and on_event is not None:
            try:
                on_event(event)
            except Exception:  # a progress display must never stop the build's log
                log.exception("dbt event handler failed on %s", event.get("info", {}).get("name"))
                on_event = None


def parse_event(line: str) -> dict[str, Any] | None:
    """A dbt JSON log event, or None for a plain line (dbt fails before its logger starts)."""
    if not line.startswith("{"):
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    return event if isinstance(event, dict) and isinstance(event.get("info"), dict) else None


def event_text(event: dict[str, Any]) -> str:
    """The line dbt's text format would have printed: time, then the message."""
    info = event["info"]
    stamp = str(info.get("ts", ""))[11:19]
    return f"{stamp}  {ANSI.sub('', str(info.get('msg', '')))}\n"


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, for a failure that run_results.json cannot explain."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

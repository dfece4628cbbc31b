"""Running dbt as a subprocess and reading what it did.

Each invocation runs in a process of its own (`run_dbt`), or several one after
the other in one process (`run_dbt_batch`, for jobs run together), never two at
once in one process, which dbt does not support. dbt's console output goes to a log
file per invocation; what happened to each node is read from `run_results.json`,
which is the per-node truth.
"""

from __future__ import annotations

import contextlib
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
from collections.abc import Callable, Mapping, Sequence
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
BATCH_MARK = "campaign_cubes_batch"  # campaign_cubes.dbt_batch's marker lines
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
    invocation = Invocation(args, work_dir, on_event)
    argv = [*dbt_command(), *invocation.argv()]
    with invocation.console_log.open("w", encoding="utf-8") as sink:
        relay = _Relay([invocation], [sink])
        relay.current = 0
        exit_code, timed_out, seconds = _run_process(argv, env, timeout, relay)
    return invocation.result(argv, exit_code, seconds, timed_out, relay.errors[0])


@dataclass(frozen=True)
class Invocation:
    """One dbt invocation of a batch: its arguments, its work folder, who hears its events."""

    args: list[str]
    work_dir: Path
    on_event: EventSink | None = None

    @property
    def console_log(self) -> Path:
        return self.work_dir / "logs" / "console.log"

    def argv(self) -> list[str]:
        """dbt's arguments: JSON log events, and this invocation's target and log folders."""
        target_path, log_path = self.work_dir / "target", self.work_dir / "logs"
        log_path.mkdir(parents=True, exist_ok=True)
        (target_path / "run_results.json").unlink(missing_ok=True)
        return [
            *self.args,
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

    def result(self, argv: list[str], exit_code: int, seconds: float, timed_out: bool, errors: list[str]) -> DbtRun:
        return DbtRun(
            argv=argv,
            exit_code=exit_code,
            seconds=seconds,
            log_file=self.console_log,
            results=read_run_results(self.work_dir / "target"),
            timed_out=timed_out,
            errors=tuple(errors),
        )


def run_dbt_batch(invocations: list[Invocation], *, env: dict[str, str], timeout: float | None = None) -> list[DbtRun]:
    """Run the invocations one after the other in one process (campaign_cubes.dbt_batch).

    Each gets its own console log and run results, as with `run_dbt`. `timeout`
    bounds the whole batch: the invocation under way when it expires, and those not
    started, come back timed out. A stand-in dbt ($CAMPAIGN_CUBES_DBT) cannot run in
    process: each invocation then runs in a process of its own, within the same time.
    """
    # the Spark launcher (campaign_cubes/spark_dbt.py) keeps ANSI mode on: one process per invocation
    if os.environ.get(ENV_DBT) or len(invocations) == 1 or target_type() == "spark":
        return _run_each(invocations, env, timeout)
    argv = [sys.executable, "-m", "campaign_cubes.dbt_batch", json.dumps([each.argv() for each in invocations])]
    with contextlib.ExitStack() as stack:
        sinks = [stack.enter_context(each.console_log.open("w", encoding="utf-8")) for each in invocations]
        relay = _Relay(invocations, sinks)
        exit_code, timed_out, seconds = _run_process(argv, env, timeout, relay)
    runs: list[DbtRun] = []
    for index, invocation in enumerate(invocations):
        ended = relay.ends.get(index)
        if ended is not None:
            runs.append(invocation.result(argv, ended[0], ended[1], False, relay.errors[index]))
        elif relay.current in (index, None):  # under way when the batch stopped, or it never began
            runs.append(invocation.result(argv, exit_code, seconds, timed_out, relay.errors[index]))
        else:
            with invocation.console_log.open("a", encoding="utf-8") as sink:
                sink.write(f"not started: the process running it stopped first (exit {exit_code})\n")
            runs.append(invocation.result(argv, exit_code or -1, 0.0, timed_out, relay.errors[index]))
    return runs


def _run_each(invocations: list[Invocation], env: dict[str, str], timeout: float | None) -> list[DbtRun]:
    deadline = None if timeout is None else time.monotonic() + timeout
    runs: list[DbtRun] = []
    for invocation in invocations:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        if left == 0.0 and runs:
            runs.append(invocation.result([dbt_executable(), *invocation.args], -1, 0.0, True, []))
            continue
        runs.append(
            run_dbt(invocation.args, env=env, work_dir=invocation.work_dir, timeout=left, on_event=invocation.on_event)
        )
    return runs


def _run_process(argv: list[str], env: dict[str, str], timeout: float | None, relay: _Relay) -> tuple[int, bool, float]:
    """Run `argv`, its output through `relay`: (exit code, timed out, seconds)."""
    started = time.monotonic()
    timed_out = False
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
    thread = threading.Thread(target=contextvars.copy_context().run, args=(relay.run, process.stdout), daemon=True)
    thread.start()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _stop(process)
    except KeyboardInterrupt:
        _stop(process)
        raise
    finally:
        thread.join()
    return process.returncode, timed_out, time.monotonic() - started


class _Relay:
    """Copies dbt's output to each invocation's console log as text, keeps the error
    events' messages and hands each JSON event on. A batch's marker lines
    (campaign_cubes.dbt_batch) say which invocation the lines that follow belong to;
    lines before the first marker (Python failing to start dbt) go to every log."""

    def __init__(self, invocations: list[Invocation], sinks: Sequence[IO[str]]) -> None:
        self.sinks = sinks
        self.handlers = [each.on_event for each in invocations]
        self.errors: list[list[str]] = [[] for _ in invocations]
        self.ends: dict[int, tuple[int, float]] = {}  # invocation -> (exit code, seconds)
        self.current: int | None = None

    def run(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", errors="replace")
            batch_mark = _batch_mark(line)
            if batch_mark is not None:
                self._mark(batch_mark)
                continue
            event = parse_event(line)
            for index in range(len(self.sinks)) if self.current is None else [self.current]:
                self._write(index, line, event)

    def _mark(self, fields: dict[str, Any]) -> None:
        if "start" in fields:
            self.current = int(fields["start"])
        elif "end" in fields:
            self.ends[int(fields["end"])] = (int(fields["exit_code"]), float(fields["seconds"]))

    def _write(self, index: int, line: str, event: dict[str, Any] | None) -> None:
        sink = self.sinks[index]
        sink.write(ANSI.sub("", line) if event is None else event_text(event))
        sink.flush()
        if event is None:
            return
        if event["info"].get("level") == "error":
            self.errors[index].append(ANSI.sub("", str(event["info"].get("msg", ""))))
        handler = self.handlers[index]
        if handler is not None:
            try:
                handler(event)
            except Exception:  # a progress display must never stop the build's log
                log.exception("dbt event handler failed on %s", event.get("info", {}).get("name"))
                self.handlers[index] = None


def _batch_mark(line: str) -> dict[str, Any] | None:
    if not line.startswith('{"' + BATCH_MARK):
        return None
    try:
        fields = json.loads(line)[BATCH_MARK]
    except (ValueError, KeyError, TypeError):
        return None
    return fields if isinstance(fields, dict) else None


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

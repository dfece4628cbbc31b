"""Running dbt as a subprocess, one at a time, and reading what it did.

dbt's in-process runner is not safe for repeated invocations, so each build is a
fresh `dbt` process. Its console output goes to a log file; what happened to each
node is read from `run_results.json`, which is the per-node truth.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PROFILE_EXAMPLE = PROJECT_ROOT / "profiles.yml.example"
# Node statuses that make a build unsuccessful ("warn" does not).
FAILED_STATUSES = frozenset({"error", "fail", "runtime error", "skipped"})
# How long dbt gets to cancel its queries after SIGINT before it is killed.
INTERRUPT_GRACE_SECONDS = 60.0
ENV_DBT = "CAMPAIGN_CUBES_DBT"
_PR_SET_PDEATHSIG = 1


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
        raise FileNotFoundError("dbt is not installed in this environment (pip install -r requirements.txt)")
    return found


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
) -> DbtRun:
    """Run `dbt <args>` with its target and logs under `work_dir`; never raises on failure."""
    target_path = work_dir / "target"
    log_path = work_dir / "logs"
    log_path.mkdir(parents=True, exist_ok=True)
    (target_path / "run_results.json").unlink(missing_ok=True)
    argv = [
        dbt_executable(), *args,
        "--project-dir", str(PROJECT_ROOT),
        "--profiles-dir", str(profiles_dir()),
        "--target-path", str(target_path),
        "--log-path", str(log_path),
    ]
    console_log = log_path / "console.log"
    full_env = {**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", **env}
    started = time.monotonic()
    timed_out = False
    with console_log.open("wb") as sink:
        parent = os.getpid()
        process = subprocess.Popen(
            argv, stdout=sink, stderr=subprocess.STDOUT, env=full_env, cwd=PROJECT_ROOT,
            preexec_fn=(lambda: _interrupt_when_parent_dies(parent)) if sys.platform == "linux" else None,
        )
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _stop(process)
        except KeyboardInterrupt:
            _stop(process)
            raise
    return DbtRun(
        argv=argv,
        exit_code=process.returncode,
        seconds=time.monotonic() - started,
        log_file=console_log,
        results=read_run_results(target_path),
        timed_out=timed_out,
    )


def tail(path: Path, lines: int = 25) -> str:
    """The last lines of a log, for a failure that run_results.json cannot explain."""
    if not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

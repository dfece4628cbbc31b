"""A job: the dbt build that rebuilds, tests and publishes one aggregate."""

from __future__ import annotations

import logging
from pathlib import Path

from campaign_cubes.dbt import PROJECT_ROOT, DbtRun, run_dbt, tail
from campaign_cubes.schedule import Job

log = logging.getLogger("orchestrate")

JOBS_WORK_DIR = PROJECT_ROOT / "target" / "jobs"


def build_args(job: Job, dbt_vars: str | None = None) -> list[str]:
    # cautious: a job runs only the tests whose every parent it builds. dbt's default
    # (eager) would also run the other cube's tests that share a seed with this one.
    args = ["build", "--select", *job.select.split(), "--indirect-selection", "cautious"]
    return [*args, "--vars", dbt_vars] if dbt_vars else args


def run_job(job: Job, *, env: dict[str, str], timeout: float | None, dbt_vars: str | None = None) -> DbtRun:
    """Build one job's selection and log one line for the start and one for the end."""
    args = build_args(job, dbt_vars)
    log.info("%s: start: dbt %s", job.name, " ".join(args))
    run = run_dbt(args, env=env, work_dir=JOBS_WORK_DIR / job.name, timeout=timeout)
    report(job, run)
    return run


def _counts(run: DbtRun) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(run.status_counts().items()))


def report(job: Job, run: DbtRun) -> None:
    """One summary line, then one line per failed node, or the log tail of a crash."""
    if run.ok:
        log.info("%s: success in %.1f s (%s)", job.name, run.seconds, _counts(run))
        for node in run.warned:
            log.warning("%s: warning: %s: %s", job.name, node.name, node.message)
        for line in project_messages(run.log_file):
            log.warning("%s: %s", job.name, line)
        return
    cause = "timed out" if run.timed_out else f"dbt exit {run.exit_code}"
    log.error(
        "%s: FAILED (%s) in %.1f s (%s); failed nodes: %s",
        job.name, cause, run.seconds, _counts(run) or "no node ran",
        ", ".join(node.name for node in run.broken) or "none recorded",
    )
    for node in run.broken:
        log.error("%s:   %s %s: %s", job.name, node.status, node.name, _first_lines(node.message))
    if not run.broken:
        log.error("%s: dbt output (%s):\n%s", job.name, run.log_file, tail(run.log_file))


def project_messages(console_log: Path) -> list[str]:
    """What the project's own macros said during the build (e.g. the unlisted codes)."""
    if not console_log.exists():
        return []
    marker = "campaign-cubes: "
    return [line.split(marker, 1)[1].strip() for line in console_log.read_text(errors="replace").splitlines()
            if marker in line]


def _first_lines(message: str, count: int = 6) -> str:
    return " | ".join(line.strip() for line in message.splitlines()[:count] if line.strip())


def job_log_dir(job: Job) -> Path:
    return JOBS_WORK_DIR / job.name / "logs"

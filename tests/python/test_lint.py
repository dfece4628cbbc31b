"""House style is enforced, not just configured: sqlfluff (dbt templater) over models and tests,
ruff (ruff.toml) and mypy (mypy.ini, strict) over the Python. .pre-commit-config.yaml runs the same."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from campaign_cubes.dbt import profiles_dir

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / command[0]), *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_sql_is_lint_clean() -> None:
    # Macro files are not linted on their own: the dbt templater skips them (.sqlfluffignore says why);
    # their SQL is linted here, compiled into the models and tests that call them.
    profiles_dir()  # the dbt templater reads ./profiles.yml
    done = run_tool("sqlfluff", "lint", "models", "tests", "--disable-progress-bar")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_python_is_lint_clean() -> None:
    done = run_tool("ruff", "check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_python_is_formatted() -> None:
    done = run_tool("ruff", "format", "--check", "--no-cache", ".")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_python_type_checks() -> None:
    # mypy.ini names the files (orchestrate.py, campaign_cubes) and the strict mode
    done = run_tool("mypy", "--cache-dir", "/dev/null")
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]


def test_both_locks_pin_the_same_versions() -> None:
    """requirements.lock (the demo's) is requirements-dev.lock (the tests') without the dev tools:
    every package it pins, at the version the tests ran with."""
    pins = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.MULTILINE)
    runtime = dict(pins.findall((ROOT / "requirements.lock").read_text()))
    dev = dict(pins.findall((ROOT / "requirements-dev.lock").read_text()))
    assert {"dbt-core", "dbt-postgres", "croniter", "matplotlib"} <= runtime.keys()
    assert not {"pytest", "pyspark", "sqlfluff"} & runtime.keys()
    assert {name: version for name, version in runtime.items() if dev.get(name) != version} == {}

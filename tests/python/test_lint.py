"""House style is enforced, not just configured: sqlfluff (dbt templater) over models and tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from campaign_cubes.dbt import profiles_dir

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_sql_is_lint_clean() -> None:
    profiles_dir()  # the dbt templater reads ./profiles.yml
    done = subprocess.run(
        [str(Path(sys.executable).parent / "sqlfluff"), "lint", "models", "tests", "--disable-progress-bar"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]

"""campaign-cubes: Adobe Campaign Classic's two cube aggregates, rebuilt as a dbt project."""

from __future__ import annotations

import os
from pathlib import Path

ENV_PROJECT_DIR = "CAMPAIGN_CUBES_PROJECT_DIR"


def _project_root() -> Path:
    """The dbt project this code drives (dbt_project.yml, orchestrate.toml, .pglocal/).

    $CAMPAIGN_CUBES_PROJECT_DIR when set; else the checkout this package sits in; else,
    for an installed copy of the package, the current directory.
    """
    configured = os.environ.get(ENV_PROJECT_DIR)
    if configured:
        return Path(configured).resolve()
    checkout = Path(__file__).resolve().parent.parent
    return checkout if (checkout / "dbt_project.yml").exists() else Path.cwd()


PROJECT_ROOT = _project_root()

"""campaign-cubes under Dagster: each cube is a dagster-dbt multi-asset, built nightly.

Load it with `dagster dev -f deploy/dagster/definitions.py` (or name it in your
workspace.yaml); docs/orchestrators.md says what this keeps and what it loses
against `orchestrate.py serve`.

What it keeps
- The publication guarantees (the audit runs before publishing; a failed audit
  leaves the published table as it was): they live in the `published_table`
  materialization, so any `dbt build` of these nodes keeps them.
- The nightly selection of selectors.yml, as select/exclude strings (dagster-dbt
  0.29 cannot read a selector with `indirect_selection: cautious` from the
  manifest) that select exactly the same nodes: tests/python/test_recipes.py
  checks it against `dbt ls --selector <job>`. A whole-cube run (the schedules
  below, "Materialize all") is `dbt build --select ... --exclude test_type:unit
  tag:audited --indirect-selection cautious`: the same nodes and tests as
  `dbt build --selector <job>`, no unit tests, no tests tagged `audited`.
  Materializing a subset of a cube runs dagster-dbt's explicit node list instead:
  no unit tests, and the audited tests are no asset checks here.

What differs: daylight saving time, stated plainly
- The schedules fire at 03:00 and 06:00 in CAMPAIGN_CUBES_TIMEZONE (UTC when it is
  unset, Dagster's default) by Dagster's rules, not this project's. On a fall-back
  night whose repeated hour holds the fire time (03:00 in Europe/Helsinki, say),
  Dagster fires once, at the SECOND occurrence; orchestrate.py fires at the first,
  an hour earlier. A fire time that does not exist on the spring-forward day runs
  at the first valid instant after the gap, as orchestrate.py does.
- Exactly-once per slot, the single catch-up after downtime, the run history in
  <schema>_audit.scheduler_runs, its locks, the retries of transient failures and
  the failure hook of orchestrate.toml are orchestrate.py's, not Dagster's: here
  Dagster's run records, run retries and sensors play those parts. Never let
  Dagster and `orchestrate.py serve` build the same CAMPAIGN_CUBES_SCHEMA.
  Wanting this project's rules instead: schedule an op that runs
  `orchestrate.py serve --once` every few minutes (as deploy/cron/crontab does).

Environment: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and
CAMPAIGN_CUBES_SCHEMA as for orchestrate.py; CAMPAIGN_CUBES_VARS, the dbt vars (YAML,
e.g. "{campaign_schema: public}"); CAMPAIGN_CUBES_TIMEZONE, the schedules' zone;
CAMPAIGN_CUBES_PROJECT_DIR, the dbt project (default: this file's checkout);
DBT_PROFILES_DIR (default: the project); DBT_TARGET_PATH, dbt's target folder
for Dagster's runs (default: <project>/target/dagster). dbt must be on PATH.
"""

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, AssetsDefinition, Definitions, ScheduleDefinition
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, DbtProject, dbt_assets

PROJECT_DIR = Path(os.environ.get("CAMPAIGN_CUBES_PROJECT_DIR") or Path(__file__).resolve().parents[2])
TIMEZONE = os.environ.get("CAMPAIGN_CUBES_TIMEZONE") or "UTC"
# The jobs of orchestrate.toml (cron) and their selectors of selectors.yml, spelt out.
CUBES = {
    "agg_messageCenter_full": ("0 3 * * *", "+agg_messageCenter_full"),
    "agg_nmspropositionrcp_full": ("0 6 * * *", "+agg_nmspropositionrcp_full campaign_proposition_statuses"),
}
# The nightly exclusions: unit tests check the SQL (CI runs them), tests tagged
# `audited` re-check what the publication's audit enforced before publishing.
NIGHTLY_EXCLUDE = "test_type:unit tag:audited"

# dbt's target folder: the manifest, and a folder of its own per run (dagster-dbt
# reads DBT_TARGET_PATH for those, else ./target of the working directory).
TARGET = Path(os.environ.setdefault("DBT_TARGET_PATH", str(PROJECT_DIR / "target" / "dagster")))
project = DbtProject(
    project_dir=PROJECT_DIR,
    profiles_dir=os.environ.get("DBT_PROFILES_DIR") or PROJECT_DIR,
    target_path=TARGET,
)
if not project.manifest_path.exists():  # parse once (dagster-dbt's `project prepare-and-package` does it ahead)
    project.preparer.prepare(project)


def dbt_vars() -> list[str]:
    configured = os.environ.get("CAMPAIGN_CUBES_VARS", "").strip()
    return ["--vars", configured] if configured else []


class CubeTranslator(DagsterDbtTranslator):
    """Seeds under the cube's name: both cubes' builds reload the seeds they read
    (campaign_channels is in both selectors), and an asset key has one producer."""

    def __init__(self, cube: str) -> None:
        super().__init__()
        self.cube = cube

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        key = super().get_asset_key(dbt_resource_props)
        return key.with_prefix(self.cube) if dbt_resource_props["resource_type"] == "seed" else key


def cube_assets(cube: str) -> AssetsDefinition:
    @dbt_assets(
        manifest=project.manifest_path,
        select=CUBES[cube][1],
        exclude=NIGHTLY_EXCLUDE,
        name=cube,
        dagster_dbt_translator=CubeTranslator(cube),
    )
    def build(context: AssetExecutionContext, dbt: DbtCliResource) -> Iterator[Any]:
        # dagster-dbt adds --select/--exclude (or, for a subset, the nodes picked);
        # cautious: a test that also reads the other cube's nodes is left to that cube
        args = ["build", "--indirect-selection", "cautious", *dbt_vars()]
        yield from dbt.cli(args, context=context).stream()

    return build


ASSETS = {cube: cube_assets(cube) for cube in CUBES}

defs = Definitions(
    assets=list(ASSETS.values()),
    schedules=[
        ScheduleDefinition(name=f"{cube}_nightly", target=ASSETS[cube], cron_schedule=cron, execution_timezone=TIMEZONE)
        for cube, (cron, _) in CUBES.items()
    ],
    resources={"dbt": DbtCliResource(project_dir=project)},
)

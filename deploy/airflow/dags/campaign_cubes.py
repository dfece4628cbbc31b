"""campaign-cubes under Airflow 3 with astronomer-cosmos: one DAG per cube, built nightly.

Copy (or symlink) this file into your dags folder; docs/orchestrators.md says what
this keeps and what it loses against `orchestrate.py serve`.

Each DAG is one task, cosmos's DbtBuildLocalOperator running
`dbt build --selector <job>`: exactly the nightly selection of selectors.yml (the
cube and everything upstream, cautious indirect selection, no unit tests, no tests
tagged `audited`), and the publication guarantees (audit before publish, a failed
audit leaves the published table as it was), which live in the `published_table`
materialization. Not a DbtTaskGroup of one task per model: cosmos then tests each
model with `dbt test --select <model>`, which brings back the unit tests and the
`audited` tests that the selector leaves out, and splits one build into many.

Daylight saving time, stated plainly: `schedule="0 3 * * *"` is Airflow 3's
CronTriggerTimetable in CAMPAIGN_CUBES_TIMEZONE (UTC when unset). On a fall-back
night whose repeated hour holds the fire time (03:00 in Europe/Helsinki, say),
it fires once, at the SECOND occurrence; orchestrate.py fires at the first, an
hour earlier. A fire time that does not exist on the spring-forward day fires at
the first valid instant after the gap, as orchestrate.py does.

Exactly-once per slot, the single catch-up, the run history in
<schema>_audit.scheduler_runs, its locks, the retries of transient failures and the
failure hook are orchestrate.py's; here Airflow's DAG runs, `catchup=False`,
`max_active_runs=1`, task retries and callbacks play those parts. Never let Airflow
and `orchestrate.py serve` build the same CAMPAIGN_CUBES_SCHEMA.

Environment of the Airflow workers: PGHOST, PGPORT, PGUSER, PGPASSWORD, PGDATABASE and
CAMPAIGN_CUBES_SCHEMA as for orchestrate.py (dbt's profile reads them);
CAMPAIGN_CUBES_VARS, the dbt vars (YAML, e.g. "{campaign_schema: public}");
CAMPAIGN_CUBES_TIMEZONE; CAMPAIGN_CUBES_PROJECT_DIR, the dbt project (default: this
file's checkout); CAMPAIGN_CUBES_DBT, the dbt executable (default: `dbt` beside the
Python running Airflow).
"""

import os
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pendulum
import yaml
from airflow.sdk import DAG
from cosmos import ProfileConfig
from cosmos.operators.local import DbtBuildLocalOperator

PROJECT_DIR = Path(os.environ.get("CAMPAIGN_CUBES_PROJECT_DIR") or Path(__file__).resolve().parents[3])
TIMEZONE = pendulum.timezone(os.environ.get("CAMPAIGN_CUBES_TIMEZONE") or "UTC")
DBT = os.environ.get("CAMPAIGN_CUBES_DBT") or str(Path(sys.executable).with_name("dbt"))
# The jobs of orchestrate.toml: selector (= job name) and cron.
CUBES = {
    "agg_messageCenter_full": "0 3 * * *",
    "agg_nmspropositionrcp_full": "0 6 * * *",
}

profile = ProfileConfig(
    profile_name="campaign_cubes",
    target_name="default",
    profiles_yml_filepath=Path(os.environ.get("DBT_PROFILES_DIR") or PROJECT_DIR) / "profiles.yml",
)


def dbt_vars() -> dict[str, object]:
    return yaml.safe_load(os.environ.get("CAMPAIGN_CUBES_VARS") or "{}") or {}


def cube_dag(cube: str, cron: str) -> DAG:
    with DAG(
        dag_id=f"campaign_cubes_{cube}",
        description=f"dbt build --selector {cube}: build, audit and publish the cube",
        schedule=cron,
        start_date=datetime(2026, 1, 1, tzinfo=TIMEZONE),
        catchup=False,  # one nightly build publishes the whole cube: no backfill of missed nights
        max_active_runs=1,  # never two builds of one cube at once
        default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "retry_exponential_backoff": True},
        tags=["campaign-cubes", "dbt"],
    ) as dag:
        DbtBuildLocalOperator(
            task_id="dbt_build",
            project_dir=str(PROJECT_DIR),
            profile_config=profile,
            dbt_executable_path=DBT,
            selector=cube,
            vars=dbt_vars(),
            install_deps=False,  # the project has no packages
            execution_timeout=timedelta(hours=3),  # orchestrate.toml's timeout_seconds
        )
    return dag


for _cube, _cron in CUBES.items():
    globals()[f"campaign_cubes_{_cube}"] = cube_dag(_cube, _cron)

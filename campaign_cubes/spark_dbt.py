"""dbt for the Spark target: the `dbt` command, with the profile's ANSI setting kept.

dbt-spark 1.11 overwrites `spark.sql.ansi.enabled` with "false" in every Spark
profile (SparkCredentials.__post_init__), and in session mode it re-applies that
value before each statement, so a `set` in on-run-start is undone by the next
statement. Without ANSI mode, 1/0, an overflow or a bad cast give NULL instead of
an error: an aggregate could be published with silently wrong cells. This
launcher puts the profile's own value back once the credentials are read;
on-run-start (macros/spark.sql, spark_require_ansi) refuses to build when ANSI
mode is off, however dbt was started.

Usage: `python -m campaign_cubes.spark_dbt <dbt arguments>` (orchestrate.py runs
it for a Spark target).
"""

from __future__ import annotations

import sys
from typing import Any

ANSI = "spark.sql.ansi.enabled"


def keep_profile_ansi() -> None:
    """Patch dbt-spark's credentials so that the profile's ANSI setting wins over its default."""
    from dbt.adapters.spark.connections import SparkCredentials

    credentials: Any = SparkCredentials  # a patched method: typed loosely on purpose
    forced = credentials.__post_init__

    def post_init(self: Any) -> None:
        wanted = (self.server_side_parameters or {}).get(ANSI)
        forced(self)
        if wanted is not None:
            self.server_side_parameters[ANSI] = str(wanted).lower()

    credentials.__post_init__ = post_init


def main() -> None:
    keep_profile_ansi()
    from dbt.cli.main import cli

    sys.argv[0] = "dbt"
    cli()


if __name__ == "__main__":
    main()

"""What the test modules share: running dbt against test schemas."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from psycopg2 import sql

from campaign_cubes.dbt import DbtRun, run_dbt


@dataclass(frozen=True)
class CubesBuild:
    """A `dbt build` of both cubes from `source_schema` into `schema`."""

    schema: str
    source_schema: str
    timezone: str
    mode: str
    run: DbtRun
    vars: dict[str, Any] = field(default_factory=dict)


def run_cubes(args: list[str], dbt_vars: dict[str, Any], *, schema: str, work_dir: Path) -> DbtRun:
    """Run dbt with the given vars, publishing into `schema` (CAMPAIGN_CUBES_SCHEMA)."""
    return run_dbt(
        [*args, "--vars", json.dumps(dbt_vars)],
        env={"CAMPAIGN_CUBES_SCHEMA": schema},
        work_dir=work_dir,
    )


def copy_campaign_tables(conn: Any, source: str, target: str, kind: str = "table") -> None:
    """Create schema `target` with a copy (`table`) or a view (`view`) of each table of `source`."""
    with conn.cursor() as cursor:
        cursor.execute(sql.SQL("create schema {}").format(sql.Identifier(target)))
        cursor.execute("select table_name from information_schema.tables where table_schema = %s", (source,))
        for (table,) in cursor.fetchall():
            cursor.execute(
                sql.SQL("create {} {} as select * from {}").format(
                    sql.SQL(kind), sql.Identifier(target, table), sql.Identifier(source, table)
                )
            )


class FakeClock:
    """An injected clock (the scheduler's Clock): sleeping advances it at once."""

    def __init__(self, start: datetime) -> None:
        # UTC: aware arithmetic in a DST zone is wall-clock arithmetic
        self.wall, self.mono = start.astimezone(UTC), 0.0
        self.sleeps: list[float] = []

    def now(self) -> datetime:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    def advance(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += seconds

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(seconds)


def write_thrift_profile(folder: Path) -> Path:
    """A profiles.yml in `folder` whose only target is Spark through a Thrift server
    (not session mode); the folder, for DBT_PROFILES_DIR."""
    (folder / "profiles.yml").write_text(
        "campaign_cubes:\n  target: cluster\n  outputs:\n    cluster:\n"
        "      type: spark\n      method: thrift\n      host: localhost\n      schema: cubes\n"
    )
    return folder

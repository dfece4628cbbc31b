"""An in-memory History for the scheduler's multi-year simulations (a test double).

It keeps the invariants the PostgreSQL history's unique indexes and locks enforce
(one running row per job, one success per slot, reentrant locks freed on close),
so that a simulation that passes here is checked against the same rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from campaign_cubes.history import ABANDONED, RUNNING, SUCCESS, Holder, RunRecord


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


@dataclass
class MemoryDatabase:
    """What a PostgreSQL server would hold: the rows and the run locks."""

    rows: list[RunRecord] = field(default_factory=list)
    locks: dict[str, MemoryHistory] = field(default_factory=dict)


class MemoryHistory:
    """A session on a MemoryDatabase; close() releases its locks like a session's end."""

    def __init__(self, database: MemoryDatabase, name: str, pid: int | None = None) -> None:
        self.database = database
        self.name = name
        self.pid = pid

    def try_lock(self, name: str) -> Holder | None:
        owner = self.database.locks.setdefault(name, self)
        # Reentrant for their owner, as PgHistory's locks are.
        return None if owner is self else Holder(owner.name)

    def holder(self, name: str) -> Holder | None:
        owner = self.database.locks.get(name)
        return Holder(owner.name) if owner is not None else None

    def unlock(self, name: str) -> None:
        if self.database.locks.get(name) is self:
            del self.database.locks[name]

    def abandon_running(self, job: str, at: datetime) -> list[RunRecord]:
        rows = self.database.rows
        stale = [i for i, row in enumerate(rows) if row.job == job and row.outcome == RUNNING]
        for i in stale:
            rows[i] = replace(
                rows[i], outcome=ABANDONED, ended_at=_utc(at), message="its process died (lock free, row still running)"
            )
        return [rows[i] for i in stale]

    def start(self, job: str, slot: datetime | None, trigger: str, at: datetime) -> int:
        if any(row.job == job and row.outcome == RUNNING for row in self.database.rows):
            raise RuntimeError(f"a second running row for {job}")  # the unique index's verdict
        run_id = len(self.database.rows) + 1
        self.database.rows.append(
            RunRecord(
                run_id=run_id,
                job=job,
                slot=_utc(slot) if slot else None,
                trigger=trigger,
                started_at=_utc(at),
                ended_at=None,
                outcome=RUNNING,
                exit_code=None,
                dbt_exit_code=None,
                attempts=0,
                failed_nodes=(),
                message="",
                pid=self.pid,
                host=self.name,
            )
        )
        return run_id

    def finish(
        self,
        run_id: int,
        at: datetime,
        outcome: str,
        exit_code: int | None,
        dbt_exit_code: int | None,
        attempts: int,
        failed_nodes: Sequence[str],
        message: str,
    ) -> None:
        row = self.database.rows[run_id - 1]
        if (
            outcome == SUCCESS
            and row.slot is not None
            and any(other.outcome == SUCCESS for other in self.slot_runs(row.job, row.slot))
        ):
            raise RuntimeError(f"a second success for {row.job} {row.slot}")  # the unique index's verdict
        self.database.rows[run_id - 1] = replace(
            row,
            ended_at=_utc(at),
            outcome=outcome,
            exit_code=exit_code,
            dbt_exit_code=dbt_exit_code,
            attempts=attempts,
            failed_nodes=tuple(failed_nodes),
            message=message,
        )

    def slot_runs(self, job: str, slot: datetime) -> list[RunRecord]:
        # In UTC: an aware time inside a DST fold never equals one in another tzinfo (PEP 495).
        return [row for row in self.database.rows if row.job == job and row.slot == _utc(slot)]

    def last_runs(self, job: str, limit: int) -> list[RunRecord]:
        return [row for row in reversed(self.database.rows) if row.job == job][:limit]

    def close(self) -> None:
        for name in [name for name, owner in self.database.locks.items() if owner is self]:
            del self.database.locks[name]

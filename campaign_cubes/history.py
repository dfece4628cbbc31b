"""Run history and run locks: what the scheduler knows survives its process.

One table, `<schema>_audit.scheduler_runs`, records every run: job, scheduled slot
(NULL for a manual run), trigger, start, end, outcome, exit codes, attempts and
failed nodes. Two partial unique indexes make the database itself refuse a second
successful run of a slot and a second running row of a job.

Run locks: one per job, one for the shared dbt state (seeds and staging views both
jobs rebuild). Each is an EXCLUSIVE lock on a table of its own in `<schema>_audit`,
held by a connection of its own in an open transaction (docs/design-locks.md): a
login without access to that schema (the reporting role) can neither take nor fake
it, unlike an advisory lock. A process that dies loses its connections and so its
locks, which is how a 'running' row whose lock is free is known to be abandoned.

The `History` protocol is what the scheduler needs; tests/python/memory_history.py
implements it in memory for the multi-year simulations, and the tests show the same
invariants on `PgHistory` over shorter ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

# Outcomes of a recorded run.
RUNNING = "running"
SUCCESS = "success"
FAILED = "failed"  # a model or test failed: not retried
TIMEOUT = "timeout"  # the run's overall timeout expired; dbt got SIGINT
TRANSIENT_EXHAUSTED = "transient_exhausted"  # transient failures used up the retry budget
STALE_SOURCE = "stale_source"  # the facts were too old to publish (stale_after): nothing was built
INTERRUPTED = "interrupted"  # stopped by SIGINT/SIGTERM
ABANDONED = "abandoned"  # its process died (found later, its lock being free)

TABLE = "scheduler_runs"
DBT_STATE_LOCK = "dbt-state"


def job_lock(job: str) -> str:
    return f"job:{job}"


def application_name(command: str) -> str:
    """What pg_stat_activity shows for our sessions: enough to find the process."""
    return f"orchestrate.py {command} pid {os.getpid()} on {socket.gethostname()}"[:63]


class HistoryUnavailable(Exception):
    """The history's database cannot be reached (or the session was lost)."""


@dataclass(frozen=True)
class RunRecord:
    run_id: int
    job: str
    slot: datetime | None
    trigger: str  # schedule, catch-up or manual
    started_at: datetime
    ended_at: datetime | None
    outcome: str
    exit_code: int | None  # orchestrate.py's exit code for this run
    dbt_exit_code: int | None  # the last dbt process's own exit code
    attempts: int
    failed_nodes: tuple[str, ...]
    message: str
    pid: int | None
    host: str


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as pg_stat_activity tells it."""

    application_name: str
    backend_pid: int | None = None
    client: str | None = None
    since: datetime | None = None  # when the lock was taken (its transaction's start)
    user: str | None = None

    def describe(self) -> str:
        details = [
            f"backend pid {self.backend_pid}" if self.backend_pid else "",
            f"user {self.user}" if self.user else "",
            f"client {self.client}" if self.client else "",
            f"since {self.since.isoformat(timespec='seconds')}" if self.since else "",
        ]
        extra = ", ".join(d for d in details if d)
        return f"'{self.application_name or '?'}'" + (f" ({extra})" if extra else "")


class History(Protocol):
    """The run history and the run locks of one session (one process)."""

    def try_lock(self, name: str) -> Holder | None:
        """Take the lock `name` now; None when taken, else who holds it."""

    def holder(self, name: str) -> Holder | None:
        """Who holds `name`, without taking it."""

    def unlock(self, name: str) -> None: ...

    def abandon_running(self, job: str, at: datetime) -> list[RunRecord]:
        """Mark `job`'s running rows abandoned; call only while holding its lock."""

    def start(self, job: str, slot: datetime | None, trigger: str, at: datetime) -> int: ...

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
    ) -> None: ...

    def slot_runs(self, job: str, slot: datetime) -> list[RunRecord]:
        """The runs recorded for one scheduled slot, oldest first."""

    def last_runs(self, job: str, limit: int) -> list[RunRecord]:
        """Most recent first."""

    def close(self) -> None: ...


def _utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)


# --- PostgreSQL --------------------------------------------------------------------


def lock_table(name: str) -> str:
    """The table of `<schema>_audit` whose EXCLUSIVE lock is the run lock `name`.

    Readable in pg_locks and \\dt, and unique per name whatever characters it holds.
    """
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")[:40]
    return f"run_lock_{slug}_{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


_COLUMNS = (
    "run_id, job, slot, trigger, started_at, ended_at, outcome, exit_code, dbt_exit_code, "
    "attempts, failed_nodes, message, pid, host"
)

_DDL = """
create table if not exists {audit}.scheduler_runs (
    run_id bigserial primary key,
    job text not null,
    slot timestamptz,                      -- the scheduled fire instant; NULL for a manual run
    trigger text not null,                 -- schedule, catch-up or manual
    started_at timestamptz not null,
    ended_at timestamptz,
    outcome text not null default 'running',
    exit_code integer,                     -- orchestrate.py's exit code for this run
    dbt_exit_code integer,                 -- the last dbt process's exit code
    attempts integer not null default 0,
    failed_nodes text[] not null default '{{}}',
    message text not null default '',
    pid integer,
    host text not null default ''
);
-- The database itself refuses a second success for a slot and two running rows for a job.
create unique index if not exists scheduler_runs_one_success
    on {audit}.scheduler_runs (job, slot) where outcome = 'success';
create unique index if not exists scheduler_runs_one_running
    on {audit}.scheduler_runs (job) where outcome = 'running';
create index if not exists scheduler_runs_job_started
    on {audit}.scheduler_runs (job, started_at desc);
"""

# A run lock's table: no columns, no rows; only its lock matters. (No comment on it:
# `comment on` would wait for a lock taken by the process that won a creation race.)
_LOCK_DDL = "create table if not exists {audit}.{table} ();"

# Two processes creating the same objects at once: the loser of the race gets one of
# these (pg_namespace/pg_class unique indexes); once the winner committed, `if not
# exists` is a no-op. Nothing exists yet that a lock could be taken on.
_CREATION_RACES = ("23505", "42P06", "42P07", "42710", "40P01")
_CREATION_ATTEMPTS = 5


class PgHistory:
    """The history table on one autocommit psycopg2 connection; each held run lock on one more."""

    def __init__(self, connection: Any, schema: str) -> None:
        self.connection = connection
        self.schema = schema
        self.audit = f"{schema}_audit"
        self._ready = False
        self._lock_tables: set[str] = set()  # lock tables known to exist
        self._held: dict[str, Any] = {}  # lock name -> the connection whose transaction holds it
        self._spare: list[Any] = []  # idle lock connections, reused (waiting polls every second)

    @classmethod
    def connect(cls, schema: str, command: str) -> PgHistory:
        """Connect with libpq's environment; HistoryUnavailable if the server cannot be reached."""
        import psycopg2

        try:
            connection = psycopg2.connect(application_name=application_name(command), connect_timeout=10)
        except psycopg2.OperationalError as exc:
            raise HistoryUnavailable(str(exc).strip()) from None
        connection.autocommit = True
        return cls(connection, schema)

    def _execute(self, statement: Any, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        import psycopg2

        try:
            with self.connection.cursor() as cursor:
                cursor.execute(statement, params)
                return cursor.fetchall() if cursor.description else []
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise HistoryUnavailable(str(exc).strip()) from None

    def _sql(self, text: str, **parts: Any) -> Any:
        """`text` with {audit} and the given identifiers (str) or SQL parts (Composable)."""
        from psycopg2 import sql

        return sql.SQL(text).format(
            audit=sql.Identifier(self.audit),
            **{key: sql.Identifier(value) if isinstance(value, str) else value for key, value in parts.items()},
        )

    def _create(self, statement: Any) -> None:
        """Run DDL in a transaction of its own, again when a concurrent creation collided."""
        import psycopg2

        for attempt in range(1, _CREATION_ATTEMPTS + 1):
            try:
                # a schema made for a build role without `create` on the database must not be created again
                [(missing,)] = self._execute("select to_regnamespace(%s) is null", (_quoted(self.audit),))
                ddl = self._sql("create schema {audit};") + statement if missing else statement
                self._execute(_sql_block(ddl))
                return
            except psycopg2.Error as exc:
                self._execute("rollback")  # autocommit session: leave no aborted transaction behind
                if exc.pgcode not in _CREATION_RACES or attempt == _CREATION_ATTEMPTS:
                    raise

    def ensure_table(self) -> None:
        if not self._ready:
            self._create(self._sql(_DDL))
            self._ready = True

    def _table_exists(self) -> bool:
        if not self._ready:
            found = self._execute("select to_regclass(%s) is not null", (f"{_quoted(self.audit)}.{TABLE}",))
            self._ready = bool(found[0][0])
        return self._ready

    # locks

    def _lock_regclass(self, name: str) -> str:
        return f"{_quoted(self.audit)}.{_quoted(lock_table(name))}"

    def _ensure_lock_table(self, name: str) -> None:
        if name in self._lock_tables:
            return
        [(found,)] = self._execute("select to_regclass(%s) is not null", (self._lock_regclass(name),))
        if not found:
            self._create(self._sql(_LOCK_DDL, table=lock_table(name)))
        self._lock_tables.add(name)

    def _lock_session(self) -> Any:
        """An idle connection for one lock, as the same user and application name."""
        import psycopg2

        if self._spare:
            return self._spare.pop()
        params = self.connection.get_dsn_parameters()
        keep = {key: params[key] for key in ("host", "port", "user", "dbname", "sslmode") if params.get(key)}
        try:
            return psycopg2.connect(
                **keep,
                connect_timeout=10,
                application_name=self.connection.get_parameter_status("application_name") or "",
                # the transaction holding the lock is idle by design: a server-wide timeout must not end it
                options="-c idle_in_transaction_session_timeout=0",
            )
        except psycopg2.OperationalError as exc:
            raise HistoryUnavailable(str(exc).strip()) from None

    def _release(self, session: Any) -> None:
        """End the session's transaction (and so its lock); keep the session for the next lock."""
        try:
            session.rollback()
            self._spare.append(session)
        except Exception:  # noqa: BLE001 - a lost session holds nothing
            _close(session)

    def try_lock(self, name: str) -> Holder | None:
        import psycopg2
        import psycopg2.errors

        if name in self._held:  # reentrant for its owner, as the session-level advisory locks were
            return None
        self._ensure_lock_table(name)
        session = self._lock_session()
        try:
            with session.cursor() as cursor:
                # LOCK assigns no transaction id and keeps no snapshot: holding it for hours
                # holds back no vacuum. EXCLUSIVE conflicts with every mode but ACCESS SHARE,
                # the only one a login without privileges can get (pg_relation_size & co).
                cursor.execute(self._sql("lock table {audit}.{table} in exclusive mode nowait", table=lock_table(name)))
        except psycopg2.errors.LockNotAvailable:
            self._release(session)
            return self.holder(name) or Holder("(released meanwhile)")
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            _close(session)
            raise HistoryUnavailable(str(exc).strip()) from None
        except psycopg2.Error:
            self._release(session)
            raise
        self._held[name] = session
        return None

    def holder(self, name: str) -> Holder | None:
        ours = [session.info.backend_pid for session in self._held.values()]
        rows = self._execute(
            """select a.application_name, a.pid, host(a.client_addr), coalesce(a.xact_start, a.backend_start),
                      a.usename
               from pg_locks l join pg_stat_activity a on a.pid = l.pid
               where l.locktype = 'relation' and l.mode = 'ExclusiveLock' and l.granted
                 and l.database = (select oid from pg_database where datname = current_database())
                 and l.relation = to_regclass(%s)
                 and l.pid <> pg_backend_pid() and l.pid <> all(%s::int[])""",
            (self._lock_regclass(name), ours),
        )
        if not rows:
            return None
        name_, pid, client, since, user = rows[0]
        return Holder(name_ or "", pid, client, since, user)

    def unlock(self, name: str) -> None:
        session = self._held.pop(name, None)
        if session is not None:
            self._release(session)  # a session already gone took its lock with it

    # rows

    def abandon_running(self, job: str, at: datetime) -> list[RunRecord]:
        if not self._table_exists():
            return []
        rows = self._execute(
            self._sql(
                f"""update {{audit}}.scheduler_runs
                set outcome = 'abandoned', ended_at = %s,
                    message = 'its process died (lock free, row still running)'
                where job = %s and outcome = 'running' returning {_COLUMNS}"""
            ),
            (at, job),
        )
        return [_record(row) for row in rows]

    def start(self, job: str, slot: datetime | None, trigger: str, at: datetime) -> int:
        self.ensure_table()
        [(run_id,)] = self._execute(
            self._sql(
                """insert into {audit}.scheduler_runs (job, slot, trigger, started_at, pid, host)
               values (%s, %s, %s, %s, %s, %s) returning run_id"""
            ),
            (job, slot, trigger, at, os.getpid(), socket.gethostname()),
        )
        return int(run_id)

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
        self._execute(
            self._sql(
                """update {audit}.scheduler_runs
               set ended_at = %s, outcome = %s, exit_code = %s, dbt_exit_code = %s, attempts = %s,
                   failed_nodes = %s, message = %s
               where run_id = %s"""
            ),
            (at, outcome, exit_code, dbt_exit_code, attempts, list(failed_nodes), message, run_id),
        )

    def slot_runs(self, job: str, slot: datetime) -> list[RunRecord]:
        if not self._table_exists():
            return []
        rows = self._execute(
            self._sql(f"select {_COLUMNS} from {{audit}}.scheduler_runs where job = %s and slot = %s order by run_id"),
            (job, slot),
        )
        return [_record(row) for row in rows]

    def last_runs(self, job: str, limit: int) -> list[RunRecord]:
        if not self._table_exists():
            return []
        rows = self._execute(
            self._sql(f"select {_COLUMNS} from {{audit}}.scheduler_runs where job = %s order by run_id desc limit %s"),
            (job, limit),
        )
        return [_record(row) for row in rows]

    def close(self) -> None:
        for session in [*self._held.values(), *self._spare, self.connection]:
            _close(session)
        self._held.clear()
        self._spare.clear()


def _quoted(identifier: str) -> str:
    """An identifier for to_regclass/to_regnamespace: quoted, embedded quotes doubled."""
    return '"' + identifier.replace('"', '""') + '"'


def _sql_block(statement: Any) -> Any:
    """`statement` in a transaction of its own, on an autocommit connection."""
    from psycopg2 import sql

    return sql.Composed([sql.SQL("begin;"), statement, sql.SQL("commit;")])


def _close(connection: Any) -> None:
    # closing a broken connection must not mask the real error
    with contextlib.suppress(Exception):
        connection.close()


def _record(row: Sequence[Any]) -> RunRecord:
    (
        run_id,
        job,
        slot,
        trigger,
        started,
        ended,
        outcome,
        exit_code,
        dbt_exit_code,
        attempts,
        failed_nodes,
        message,
        pid,
        host,
    ) = row
    return RunRecord(
        run_id=int(run_id),
        job=job,
        slot=_utc(slot) if slot else None,
        trigger=trigger,
        started_at=_utc(started),
        ended_at=_utc(ended) if ended else None,
        outcome=outcome,
        exit_code=exit_code,
        dbt_exit_code=dbt_exit_code,
        attempts=attempts,
        failed_nodes=tuple(failed_nodes or ()),
        message=message or "",
        pid=pid,
        host=host or "",
    )
